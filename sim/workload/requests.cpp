// SPDX-License-Identifier: Apache-2.0
// Serving requests: arrival processes, length distributions and request traces.
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "moesim/core/error.hpp"
#include "moesim/core/rng.hpp"
#include "moesim/workload/serving.hpp"

namespace moesim::workload {

namespace {

/** Standard normal deviate (Box-Muller, written out so every standard library gives the same numbers). */
double standard_normal(Rng& rng) {
  double u1 = rng.uniform();
  while (u1 <= 0.0) u1 = rng.uniform();
  const double u2 = rng.uniform();
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

double exponential(Rng& rng, double mean) {
  double u = rng.uniform();
  while (u <= 0.0) u = rng.uniform();
  return -std::log(u) * mean;
}

/** Gamma(shape k, scale theta): Marsaglia and Tsang (2000), ACM TOMS 26(3); shape < 1 boosted by U^(1/k). */
double gamma(Rng& rng, double k, double theta) {
  if (k < 1.0) {
    double u = rng.uniform();
    while (u <= 0.0) u = rng.uniform();
    return gamma(rng, k + 1.0, theta) * std::pow(u, 1.0 / k);
  }
  const double d = k - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x = 0.0, v = 0.0;
    do {
      x = standard_normal(rng);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = rng.uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v * theta;
    if (u > 0.0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v * theta;
  }
}

int draw_length(const scenario::LengthSpec& l, Rng& rng) {
  double x = 0.0;
  if (l.type == "fixed") {
    x = l.value;
  } else if (l.type == "uniform") {
    const auto lo = static_cast<long long>(std::ceil(l.min)), hi = static_cast<long long>(std::floor(l.max));
    x = static_cast<double>(lo + static_cast<long long>(rng.below(static_cast<std::uint64_t>(hi - lo + 1))));
  } else {  // lognormal with the given mean: mu = ln(mean) - sigma^2 / 2
    const double mu = std::log(l.mean) - 0.5 * l.sigma * l.sigma;
    x = std::exp(mu + l.sigma * standard_normal(rng));
    x = std::max(x, l.min);
    if (l.max > 0.0) x = std::min(x, l.max);
  }
  return static_cast<int>(std::max(1.0, std::round(x)));
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  std::stringstream ss(line);
  while (std::getline(ss, cell, ',')) {
    while (!cell.empty() && (cell.back() == ' ' || cell.back() == '\t' || cell.back() == '\r')) cell.pop_back();
    std::size_t b = 0;
    while (b < cell.size() && (cell[b] == ' ' || cell[b] == '\t')) ++b;
    cells.push_back(cell.substr(b));
  }
  if (!line.empty() && line.back() == ',') cells.emplace_back();
  return cells;
}

/** read_request_trace(), also saying whether the trace has the `task` column. */
std::vector<Request> read_trace(const std::string& path, bool& has_task) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, 0, 0, "serving.arrival.trace_csv", "cannot read the request trace (no such file or not readable)");
  std::vector<Request> out;
  std::string line;
  int lineno = 0;
  bool header = false;
  has_task = false;
  const char* columns = "arrival_s,prompt_tokens,output_tokens[,task]";
  while (std::getline(in, line)) {
    ++lineno;
    // A UTF-8 byte order mark (Excel's "CSV UTF-8" writes one) is not part of the first cell.
    if (lineno == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
    if (line.find('\r') != std::string::npos && line.find('\r') + 1 < line.size())
      throw InputError(path, lineno, static_cast<int>(line.find('\r')) + 1, "trace",
                       "a carriage return inside a line: the file uses old Mac (CR-only) line endings; save it with LF or CRLF");
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // Blank (or whitespace-only) lines and comments, indented or not, are skipped.
    const std::size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto cells = split_csv_line(line);
    if (!header) {
      const bool ok3 = cells.size() == 3, ok4 = cells.size() == 4 && cells[3] == "task";
      if (!(ok3 || ok4) || cells[0] != "arrival_s" || cells[1] != "prompt_tokens" || cells[2] != "output_tokens")
        throw InputError(path, lineno, 1, "header", fmt::format("expected the header '{}', got '{}'", columns, line));
      header = true;
      has_task = ok4;
      continue;
    }
    if (cells.size() != (has_task ? 4u : 3u))
      throw InputError(path, lineno, 1, "row", fmt::format("expected {} columns ({}), got {}", has_task ? 4 : 3, columns, cells.size()));
    int col = 1;
    auto number = [&](std::size_t i, const char* name, double lo, double hi, bool integer) {
      const std::string& c = cells[i];
      double v = 0.0;
      std::size_t pos = 0;
      bool ok = !c.empty() && c.find_first_of("xXpP") == std::string::npos;  // no hexadecimal floats
      if (ok) {
        try {
          v = std::stod(c, &pos);
        } catch (...) {
          ok = false;
        }
      }
      ok = ok && pos == c.size() && std::isfinite(v) && (!integer || v == std::floor(v));
      if (!ok)
        throw InputError(path, lineno, col, name, fmt::format("expected {}, got '{}'", integer ? "a whole number" : "a number", c));
      if (!(v >= lo && v <= hi))
        throw InputError(path, lineno, col, name, fmt::format("{} is out of range: must be in [{}, {}]", c, lo, hi));
      col += static_cast<int>(c.size()) + 1;
      return v;
    };
    Request r;
    r.arrival_s = number(0, "arrival_s", 0.0, 3.2e7, false);
    r.prompt_tokens = static_cast<int>(number(1, "prompt_tokens", 1.0, 1e7, true));
    r.output_tokens = static_cast<int>(number(2, "output_tokens", 1.0, 1e7, true));
    r.task = has_task ? static_cast<int>(number(3, "task", 0.0, 1e6, true)) : 0;
    r.line = lineno;
    if (!out.empty() && r.arrival_s < out.back().arrival_s)
      throw InputError(path, lineno, 1, "arrival_s",
                       fmt::format("arrival times must be ascending: {} s comes after {} s", r.arrival_s, out.back().arrival_s));
    out.push_back(r);
  }
  if (!header) throw InputError(path, 1, 1, "header", fmt::format("the trace is empty; expected the header '{}'", columns));
  if (out.empty()) throw InputError(path, lineno, 1, "row", "the trace has a header but no requests");
  return out;
}

/** The trace requests a scenario serves (up to serving.requests, arriving before serving.duration_s), with their
 *  lengths drawn where the scenario does not take them from the trace, checked against routing.tasks,
 *  serving.task_experts_only and the model's context window. */
std::vector<Request> served_trace(const scenario::Scenario& s, bool& has_task) {
  const scenario::ServingSpec& v = *s.serving;
  const long long limit = v.requests > 0 ? v.requests : std::numeric_limits<long long>::max();
  const double horizon = v.duration_s > 0.0 ? v.duration_s : std::numeric_limits<double>::infinity();
  Rng prompts = Rng::derived(s.seed, 0xB2200002ULL), outputs = Rng::derived(s.seed, 0xC3300003ULL);
  const bool task_routing = s.routing.type == "task";
  const int n_tasks = std::max(1, s.routing.tasks);
  std::vector<Request> out;
  std::vector<Request> trace = read_trace(v.arrival.trace_csv, has_task);
  for (Request& r : trace) {
    if (static_cast<long long>(out.size()) >= limit || r.arrival_s >= horizon) break;
    if (v.prompt_tokens.type != "trace") r.prompt_tokens = draw_length(v.prompt_tokens, prompts);
    if (v.output_tokens.type != "trace") r.output_tokens = draw_length(v.output_tokens, outputs);
    if (task_routing && has_task && r.task >= n_tasks)
      throw InputError(v.arrival.trace_csv, r.line, 1, "task",
                       fmt::format("task {} but routing.tasks is {} (tasks are numbered 0 to {})", r.task, n_tasks, n_tasks - 1));
    // As the length distributions' bounds (scenario checks): prompt and output share the model's context window.
    if (static_cast<long long>(r.prompt_tokens) + r.output_tokens > s.model.seq_len)
      throw InputError(v.arrival.trace_csv, r.line, 1, "prompt_tokens",
                       fmt::format("the request arriving at {} s needs {} tokens of context ({} prompt + {} output), more than "
                                   "the model's context window model.seq_len = {}: a serving engine refuses such requests",
                                   r.arrival_s, r.prompt_tokens + r.output_tokens, r.prompt_tokens, r.output_tokens, s.model.seq_len));
    out.push_back(r);
  }
  // A replica holding only one task's experts serves that task alone.
  if (has_task && v.task_experts_only && !out.empty()) {
    std::set<int> tasks;
    const Request* other = nullptr;
    for (const Request& r : out) {
      tasks.insert(r.task);
      if (!other && r.task != out.front().task) other = &r;
    }
    if (other) {
      std::vector<std::string> names;
      for (int t : tasks) names.push_back(std::to_string(t));
      throw InputError(v.arrival.trace_csv, other->line, 1, "task",
                       fmt::format("serving.task_experts_only: every replica holds only one task's experts, so the requests "
                                   "must all be of one task, but the trace has tasks {} (task {} from line {}, task {} here); "
                                   "serve one task's requests, or set serving.task_experts_only false",
                                   fmt::join(names, ", "), out.front().task, out.front().line, other->task));
    }
  }
  return out;
}

/** Largest prompt draw_length() can give for `l` (after the resolver every length has a bound); 0 when unbounded. */
int longest_length(const scenario::LengthSpec& l) {
  double x = 0.0;
  if (l.type == "fixed") x = l.value;
  else if (l.type == "uniform") x = std::floor(l.max);
  else if (l.type == "lognormal") x = l.max > 0.0 ? l.max : 0.0;
  if (x <= 0.0 && l.type != "fixed") return 0;
  return static_cast<int>(std::max(1.0, std::round(x)));
}

}  // namespace

std::vector<Request> read_request_trace(const std::string& path) {
  bool has_task = false;
  return read_trace(path, has_task);
}

std::vector<double> task_mix(const scenario::Scenario& s) {
  if (!s.serving || s.routing.type != "task" || s.routing.tasks < 1 || s.serving->arrival.type != "trace") return {};
  bool has_task = false;
  const std::vector<Request> reqs = served_trace(s, has_task);
  if (!has_task || reqs.empty()) return {};
  std::vector<double> w(static_cast<std::size_t>(s.routing.tasks), 0.0);
  for (const Request& r : reqs) w[static_cast<std::size_t>(r.task)] += 1.0;  // served_trace checked task < tasks
  for (double& x : w) x /= static_cast<double>(reqs.size());
  return w;
}

WorkloadBounds workload_bounds(const scenario::Scenario& s) {
  const scenario::ServingSpec& v = *s.serving;
  WorkloadBounds b;
  b.requests = v.requests > 0 ? v.requests : 0;
  const bool trace = v.arrival.type == "trace";
  const int context = std::max(1, s.model.seq_len - 1);  // a request's prompt leaves at least one output token
  if (trace) {
    // The served requests themselves: their count, and their longest prompt (read or drawn).
    bool has_task = false;
    const std::vector<Request> reqs = served_trace(s, has_task);
    b.requests = static_cast<long long>(reqs.size());
    for (const Request& r : reqs) b.longest_prompt = std::max(b.longest_prompt, r.prompt_tokens);
  } else {
    b.longest_prompt = longest_length(v.prompt_tokens);
  }
  b.longest_prompt = b.longest_prompt > 0 ? std::min(b.longest_prompt, context) : context;
  return b;
}

std::vector<Request> generate_requests(const scenario::Scenario& s) {
  const scenario::ServingSpec& v = *s.serving;
  const long long limit = v.requests > 0 ? v.requests : std::numeric_limits<long long>::max();
  const double horizon = v.duration_s > 0.0 ? v.duration_s : std::numeric_limits<double>::infinity();
  Rng arrivals = Rng::derived(s.seed, 0xA1100001ULL), prompts = Rng::derived(s.seed, 0xB2200002ULL),
      outputs = Rng::derived(s.seed, 0xC3300003ULL), tasks = Rng::derived(s.seed, 0xD4400004ULL);
  const int n_tasks = s.routing.type == "task" ? std::max(1, s.routing.tasks) : 1;
  std::vector<Request> out;
  if (v.arrival.type == "trace") {
    bool has_task = false;
    return served_trace(s, has_task);
  }
  const double mean_gap = v.arrival.rate_per_s > 0.0 ? 1.0 / v.arrival.rate_per_s : 0.0;
  double t = 0.0;
  long long n = 0;
  // The estimated count bounds the reservation (a duration-bounded run at rate r has ~ r x duration requests).
  const double expect = std::min(static_cast<double>(limit), std::isfinite(horizon) ? horizon * v.arrival.rate_per_s * 1.05 + 16 : 1e6);
  out.reserve(static_cast<std::size_t>(std::min(expect, 5e7)));
  while (n < limit) {
    if (v.arrival.type == "poisson") {
      t += exponential(arrivals, mean_gap);
    } else if (v.arrival.type == "gamma") {
      const double k = 1.0 / (v.arrival.cv * v.arrival.cv);
      t += gamma(arrivals, k, mean_gap / k);
    } else if (v.arrival.type == "constant") {
      t = static_cast<double>(n) * mean_gap;
    } else if (v.arrival.type == "bursts") {
      t = static_cast<double>(n / v.arrival.burst_size) * mean_gap * v.arrival.burst_size;
    } else {  // offline
      t = 0.0;
    }
    if (t >= horizon) break;
    Request r;
    r.arrival_s = t;
    r.prompt_tokens = draw_length(v.prompt_tokens, prompts);
    r.output_tokens = draw_length(v.output_tokens, outputs);
    r.task = n_tasks > 1 ? static_cast<int>(tasks.below(static_cast<std::uint64_t>(n_tasks))) : 0;
    out.push_back(r);
    ++n;
  }
  return out;
}

}  // namespace moesim::workload
