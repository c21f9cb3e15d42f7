// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "moesim/catalog/accelerator.hpp"
#include "moesim/perf/measured_profile.hpp"

namespace moesim::perf {

/** Transfer error of one kernel class and dtype: predicted (from the source profile) against
 *  measured (target profile) times of the target's kernel entries. Errors are (predicted -
 *  measured) / measured. */
struct TransferCheckRow {
  std::string kernel_class;
  std::string dtype;
  int entries = 0;          ///< target entries compared
  int transferred = 0;      ///< of them, predicted on the transferred path (the others fell back to the roofline)
  double median_abs_error = 0.0;
  double max_abs_error = 0.0;
  double total_error = 0.0;  ///< error of the summed time of the entries (what a step sees)
  bool pass = false;         ///< median |error| and |total error| both <= tolerance
};

/** The check of DESIGN.md section 3, "predict H200 from H100 and compare with the measured H200
 *  (target error <= 10 %)", for any pair of profiles. */
struct TransferCheckResult {
  std::string source;       ///< source profile citation
  std::string target;       ///< target profile citation
  double tolerance = 0.10;
  std::vector<TransferCheckRow> rows;  ///< one per (class, dtype) of the target's kernel entries
  bool pass = false;                   ///< every row passes
  bool synthetic = false;              ///< either profile is not a measurement
  std::string table() const;           ///< a plain-text table of the rows
};

/** Predicts every kernel entry of `target` (MeasuredProfile::kernel_entries()) with a TransferModel
 *  calibrated on `source` for `target_spec` (catalog figures, as the simulator would), and compares
 *  per class and dtype. Ops whose class the source lacks fall back to the roofline with `efficiency`
 *  and are counted in the row (entries - transferred). */
TransferCheckResult transfer_check(const MeasuredProfile& source, const std::optional<catalog::AcceleratorSpec>& source_spec,
                                   const MeasuredProfile& target, const catalog::AcceleratorSpec& target_spec,
                                   const EfficiencyTable& efficiency, double tolerance = 0.10);

}  // namespace moesim::perf
