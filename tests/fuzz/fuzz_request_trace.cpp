// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: arbitrary bytes as a serving request trace (serving.arrival.trace_csv): read_request_trace, then
// the served requests of two scenarios replaying it (scenarios/examples/serving-trace.yaml as shipped, and with task
// routing over 4 tasks and a 256-token context window, so that the task and context checks run): generate_requests,
// workload_bounds and task_mix. Besides the rule every harness checks (load or a moesim::Error), what is accepted must
// hold what the readers promise: arrivals ascending and non-negative, lengths at least 1, each request within the
// context window, a task mix that sums to 1. Seed corpus: scenarios/traces/ and tests/fuzz/corpus/trace/.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "moesim/core/error.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim/workload/serving.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();  // a broken promise is a finding
}

void check_requests(const std::vector<moesim::workload::Request>& reqs, int seq_len) {
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = reqs[i];
    require(std::isfinite(r.arrival_s) && r.arrival_s >= 0.0);
    require(i == 0 || r.arrival_s >= reqs[i - 1].arrival_s);
    require(r.prompt_tokens >= 1 && r.output_tokens >= 1 && r.task >= 0);
    if (seq_len > 0) require(static_cast<long long>(r.prompt_tokens) + r.output_tokens <= seq_len);
  }
}

/** The shipped trace example, its trace_csv pointing at `csv`; `task_routing`: 4 tasks, a 256-token window. */
moesim::scenario::Scenario replaying(const std::string& csv, bool task_routing) {
  std::vector<std::string> overrides = {"serving.arrival={type: trace, trace_csv: '" + csv + "'}"};
  if (task_routing) {
    overrides.push_back("routing={type: task, tasks: 4}");
    overrides.push_back("model.seq_len=256");
  }
  try {
    return moesim::scenario::load_file(MOESIM_SOURCE_ROOT "/scenarios/examples/serving-trace.yaml", moesim::fuzz::real_catalog(),
                                       overrides);
  } catch (const moesim::Error& e) {
    // The example no longer loads as this harness sets it up: say so rather than fuzz less than it claims.
    std::fprintf(stderr, "fuzz_request_trace: the replaying scenario does not load: %s\n", e.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string csv = moesim::fuzz::scratch_file(text, ".csv");  // the same path every call (one per process)
  static const moesim::scenario::Scenario plain = replaying(csv, false);
  static const moesim::scenario::Scenario tasks = replaying(csv, true);
  try {
    const auto reqs = moesim::workload::read_request_trace(csv);
    require(!reqs.empty());
    check_requests(reqs, 0);
  } catch (const moesim::Error&) {
  }
  for (const moesim::scenario::Scenario* s : {&plain, &tasks}) {
    const moesim::scenario::Scenario& sc = *s;
    try {
      check_requests(moesim::workload::generate_requests(sc), sc.model.seq_len);
      const auto bounds = moesim::workload::workload_bounds(sc);
      require(bounds.requests >= 0 && bounds.longest_prompt >= 0 && bounds.longest_prompt < sc.model.seq_len);
      const std::vector<double> mix = moesim::workload::task_mix(sc);
      if (!mix.empty()) {
        double sum = 0.0;
        for (const double w : mix) {
          require(w >= 0.0 && w <= 1.0);
          sum += w;
        }
        require(std::abs(sum - 1.0) < 1e-9);
      }
    } catch (const moesim::Error&) {
    }
  }
  return 0;
}
