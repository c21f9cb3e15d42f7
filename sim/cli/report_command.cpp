// SPDX-License-Identifier: Apache-2.0
// `moesim report ID --format html|md|csv -o DIR`: writes a run's or a comparison's report from the
// store (reports/, moesim::reports) and prints the path of the file written.
#include <iostream>

#include "commands.hpp"
#include "moesim/reports/report.hpp"
#include "moesim/store/store.hpp"

namespace moesim::cli {

int cmd_report(const GlobalOptions&, const ReportOptions& o) {
  const reports::ReportTarget target = reports::parse_target(o.id);
  const reports::Format format = reports::parse_format(o.format);
  const store::Store db(o.db, store::Store::Mode::read_only);
  std::cout << reports::write_report(db, target, format, o.output_dir) << "\n";
  return 0;
}

}  // namespace moesim::cli
