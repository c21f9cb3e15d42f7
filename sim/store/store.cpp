// SPDX-License-Identifier: Apache-2.0
#include "moesim/store/store.hpp"

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"
#include "schema.hpp"
#include "sqlite.hpp"

namespace moesim::store {

using detail::Db;
using detail::Stmt;
using detail::Transaction;

namespace {

// ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z, computed by SQLite.
#define MOESIM_NOW_UTC "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

RunStatus parse_status(const std::string& text, const std::string& path) {
  if (text == "running") return RunStatus::running;
  if (text == "complete") return RunStatus::complete;
  if (text == "failed") return RunStatus::failed;
  throw Error(fmt::format("run store {}: unknown run status '{}' (allowed: running, complete, failed)", path, text));
}

// The seed is an unsigned 64-bit value; SQLite integers are signed 64-bit. Store the bit pattern.
std::int64_t seed_to_sql(std::uint64_t seed) {
  std::int64_t out = 0;
  std::memcpy(&out, &seed, sizeof out);
  return out;
}

std::uint64_t seed_from_sql(std::int64_t value) {
  std::uint64_t out = 0;
  std::memcpy(&out, &value, sizeof out);
  return out;
}

std::string dump_json(const nlohmann::json& j, const std::string& what, const std::string& path) {
  try {
    return j.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("run store {}: cannot serialize {} as JSON: {}", path, what, e.what()));
  }
}

nlohmann::json parse_json(const std::string& text, const std::string& what, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("run store {}: stored {} is not valid JSON: {}", path, what, e.what()));
  }
}

[[noreturn]] void throw_no_run(std::int64_t id, const std::string& path) {
  throw Error(fmt::format("no run with id {} in {}", id, path));
}

/** The status of run `id`, or nothing when there is no such run. */
std::optional<RunStatus> read_status(Db& db, std::int64_t id) {
  Stmt s(db, "SELECT status FROM runs WHERE id = ?1", fmt::format("read status of run {}", id));
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  const RunStatus status = parse_status(s.text(0), db.path());
  s.reset();
  return status;
}

/** Throws unless run `id` exists and is running (the only state that can change). */
void require_running(Db& db, std::int64_t id, const char* action) {
  const std::optional<RunStatus> status = read_status(db, id);
  if (!status) throw_no_run(id, db.path());
  if (*status != RunStatus::running) {
    throw Error(fmt::format("run store {}: cannot {} run {}: it is already {} (only a running run can change)",
                            db.path(), action, id, to_string(*status)));
  }
}

void write_metrics(Db& db, std::int64_t id, const std::vector<Metric>& metrics) {
  Stmt s(db, "INSERT INTO metrics (run_id, position, name, value, unit) VALUES (?1, ?2, ?3, :value, ?5)", "");
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    const Metric& m = metrics[i];
    s.set_context(fmt::format("complete_run(run {}): metric '{}'", id, m.name));
    s.bind(1, id).bind(2, static_cast<std::int64_t>(i)).bind(3, m.name).bind(4, m.value).bind(5, m.unit);
    s.run();
    s.reset();
  }
}

void write_datacenters(Db& db, std::int64_t id, const std::vector<DatacenterResult>& datacenters) {
  Stmt s(db,
         "INSERT INTO datacenter_results (run_id, position, name, display_name, country_iso_code, region, share, "
         "chips, pue, gross_kgco2e_per_kwh, net_kgco2e_per_kwh, cfe_fraction, it_energy_j, network_energy_j, "
         "facility_energy_j, co2e_gross_kg, co2e_net_kg, embodied_co2e_kg) VALUES (?1, ?2, ?3, ?4, ?5, ?6, :share, "
         "?8, :pue, :gross_kgco2e_per_kwh, :net_kgco2e_per_kwh, :cfe_fraction, :it_energy_j, :network_energy_j, "
         ":facility_energy_j, :co2e_gross_kg, :co2e_net_kg, :embodied_co2e_kg)",
         "");
  for (std::size_t i = 0; i < datacenters.size(); ++i) {
    const DatacenterResult& d = datacenters[i];
    s.set_context(fmt::format("complete_run(run {}): datacenter '{}'", id, d.name));
    s.bind(1, id).bind(2, static_cast<std::int64_t>(i)).bind(3, d.name).bind(4, d.display_name);
    s.bind(5, d.country_iso_code).bind(6, d.region).bind(7, d.share).bind(8, d.chips).bind(9, d.pue);
    s.bind(10, d.gross_kgco2e_per_kwh).bind(11, d.net_kgco2e_per_kwh).bind(12, d.cfe_fraction);
    s.bind(13, d.it_energy_j).bind(14, d.network_energy_j).bind(15, d.facility_energy_j);
    s.bind(16, d.co2e_gross_kg).bind(17, d.co2e_net_kg).bind(18, d.embodied_co2e_kg);
    s.run();
    s.reset();
  }
}

void write_breakdown(Db& db, std::int64_t id, const std::vector<PhaseBreakdown>& breakdown) {
  Stmt s(db,
         "INSERT INTO phase_breakdown (run_id, position, phase_kind, time_s, critical_path_s) "
         "VALUES (?1, ?2, ?3, :time_s, :critical_path_s)",
         "");
  for (std::size_t i = 0; i < breakdown.size(); ++i) {
    const PhaseBreakdown& b = breakdown[i];
    s.set_context(fmt::format("complete_run(run {}): phase kind '{}'", id, b.phase_kind));
    s.bind(1, id).bind(2, static_cast<std::int64_t>(i)).bind(3, b.phase_kind).bind(4, b.time_s);
    s.bind(5, b.critical_path_s);
    s.run();
    s.reset();
  }
}

void write_series(Db& db, std::int64_t id, const std::vector<Series>& series) {
  Stmt header(db,
              "INSERT INTO series (run_id, position, name, x_unit, y_unit) VALUES (?1, ?2, ?3, ?4, ?5) "
              "RETURNING id",
              "");
  Stmt point(db, "INSERT INTO series_points (series_id, idx, x, y) VALUES (?1, ?2, :x, :y)", "");
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Series& ser = series[i];
    const std::string context = fmt::format("complete_run(run {}): series '{}'", id, ser.name);
    if (ser.x.size() != ser.y.size()) {
      throw Error(fmt::format("run store {}: {}: {} x values but {} y values (they must pair up)", db.path(), context,
                              ser.x.size(), ser.y.size()));
    }
    header.set_context(context);
    header.bind(1, id).bind(2, static_cast<std::int64_t>(i)).bind(3, ser.name).bind(4, ser.x_unit);
    header.bind(5, ser.y_unit);
    if (!header.step()) throw Error(fmt::format("run store {}: {}: INSERT returned no id", db.path(), context));
    const std::int64_t series_id = header.int64(0);
    if (header.step()) throw Error(fmt::format("run store {}: {}: INSERT returned two ids", db.path(), context));
    header.reset();
    for (std::size_t k = 0; k < ser.x.size(); ++k) {
      point.set_context(fmt::format("{}: point {}", context, k));
      point.bind(1, series_id).bind(2, static_cast<std::int64_t>(k)).bind(3, ser.x[k]).bind(4, ser.y[k]);
      point.run();
      point.reset();
    }
  }
}

void write_requests(Db& db, std::int64_t id, const std::vector<RequestTiming>& requests) {
  Stmt s(db,
         "INSERT INTO request_timings (run_id, idx, arrival_s, first_token_s, end_s, queue_s, prompt_tokens, "
         "output_tokens, replica, preemptions) VALUES (?1, ?2, :arrival_s, :first_token_s, :end_s, :queue_s, ?7, ?8, ?9, ?10)",
         "");
  s.set_context(fmt::format("complete_run(run {}): request timings", id));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const RequestTiming& q = requests[i];
    s.bind(1, id).bind(2, static_cast<std::int64_t>(i)).bind(3, q.arrival_s).bind(4, q.first_token_s).bind(5, q.end_s);
    s.bind(6, q.queue_s).bind(7, q.prompt_tokens).bind(8, q.output_tokens).bind(9, q.replica).bind(10, q.preemptions);
    s.run();
    s.reset();
  }
}

/** Whether `sql` (a SELECT with one parameter ?1 = id) returns a row. */
bool row_exists(Db& db, const char* sql, std::int64_t id, const std::string& context) {
  Stmt s(db, sql, context);
  s.bind(1, id);
  const bool found = s.step();
  s.reset();
  return found;
}

}  // namespace

std::string to_string(RunStatus s) {
  switch (s) {
    case RunStatus::running:
      return "running";
    case RunStatus::complete:
      return "complete";
    case RunStatus::failed:
      return "failed";
  }
  return "unknown";  // unreachable for a valid enum value
}

const Metric* RunRecord::metric(const std::string& name) const {
  for (const Metric& m : metrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

double RunRecord::metric_or(const std::string& name, double fallback) const {
  const Metric* m = metric(name);
  return m ? m->value : fallback;
}

struct Store::Impl {
  Impl(const std::string& path, Mode m, double busy_timeout_s)
      : db(path, m == Mode::read_only, busy_timeout_s), mode(m), version(detail::open_schema(db, m == Mode::read_only)) {}

  /** Refuses writes on a read-only store before SQLite would, with the same wording. */
  void require_writable(const char* action) const {
    if (mode == Mode::read_only) {
      throw Error(fmt::format("database is read-only: {}: {}: this command opened the store for reading only",
                              db.path(), action));
    }
  }

  Db db;
  Mode mode;
  int version;
};

Store::Store(const std::string& path, Mode mode, double busy_timeout_s)
    : impl_(std::make_unique<Impl>(path, mode, busy_timeout_s)) {}

Store::~Store() = default;
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;

const std::string& Store::path() const { return impl_->db.path(); }

int Store::schema_version() const { return impl_->version; }

Store::Mode Store::mode() const { return impl_->mode; }

std::int64_t Store::create_comparison(const std::string& scenario_name) {
  impl_->require_writable("create_comparison");
  Db& db = impl_->db;
  Transaction t(db, Transaction::Kind::write, "create_comparison");
  std::int64_t id = 0;
  {
    Stmt s(db, "INSERT INTO comparisons (scenario_name, created_at_utc) VALUES (?1, " MOESIM_NOW_UTC ") RETURNING id",
           fmt::format("create_comparison('{}')", scenario_name));
    s.bind(1, scenario_name);
    if (!s.step()) throw Error(fmt::format("run store {}: create_comparison: INSERT returned no id", db.path()));
    id = s.int64(0);
    s.reset();
  }
  t.commit();
  return id;
}

namespace {
/** Inserts a `running` run inside the caller's write transaction; returns its id. */
std::int64_t insert_running_run(Db& db, const RunRecord& header, const std::optional<std::int64_t>& comparison_id,
                                const std::string& context) {
  const std::string scenario_json = dump_json(header.scenario, "the scenario of " + context, db.path());
  Stmt s(db,
         "INSERT INTO runs (scenario_name, scenario_file, scenario_json, seed, moesim_version, git_hash, status, "
         "created_at_utc, comparison_id, alternative_label, kind, point_hash) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', " MOESIM_NOW_UTC ", ?7, ?8, ?9, ?10) RETURNING id",
         context);
  s.bind(1, header.scenario_name).bind(2, header.scenario_file).bind(3, scenario_json);
  s.bind(4, seed_to_sql(header.seed)).bind(5, header.moesim_version).bind(6, header.git_hash);
  s.bind(7, comparison_id).bind(8, header.alternative_label).bind(9, header.kind);
  if (header.point_hash.empty())
    s.bind_null(10);
  else
    s.bind(10, header.point_hash);
  if (!s.step()) throw Error(fmt::format("run store {}: {}: INSERT returned no id", db.path(), context));
  const std::int64_t id = s.int64(0);
  s.reset();
  return id;
}
}  // namespace

std::pair<std::int64_t, std::vector<std::int64_t>> Store::begin_comparison(const std::string& scenario_name,
                                                                           const std::vector<RunRecord>& headers) {
  impl_->require_writable("begin_comparison");
  Db& db = impl_->db;
  const std::string context = fmt::format("begin_comparison('{}', {} runs)", scenario_name, headers.size());
  Transaction t(db, Transaction::Kind::write, context);
  std::int64_t cmp = 0;
  {
    Stmt s(db, "INSERT INTO comparisons (scenario_name, created_at_utc) VALUES (?1, " MOESIM_NOW_UTC ") RETURNING id",
           context);
    s.bind(1, scenario_name);
    if (!s.step()) throw Error(fmt::format("run store {}: {}: INSERT returned no id", db.path(), context));
    cmp = s.int64(0);
    s.reset();
  }
  std::vector<std::int64_t> ids;
  for (const RunRecord& h : headers)
    ids.push_back(insert_running_run(db, h, cmp, fmt::format("{}: run '{}'", context, h.alternative_label)));
  t.commit();
  return {cmp, ids};
}

std::int64_t Store::begin_run(const RunRecord& header) {
  impl_->require_writable("begin_run");
  Db& db = impl_->db;
  const std::string context = fmt::format("begin_run('{}')", header.scenario_name);
  Transaction t(db, Transaction::Kind::write, context);
  if (header.comparison_id && !has_comparison(*header.comparison_id)) {
    throw Error(fmt::format("run store {}: {}: no comparison with id {}", db.path(), context, *header.comparison_id));
  }
  const std::int64_t id = insert_running_run(db, header, header.comparison_id, context);
  t.commit();
  return id;
}

void Store::complete_run(std::int64_t id, const RunRecord& results) {
  impl_->require_writable("complete_run");
  Db& db = impl_->db;
  const std::string context = fmt::format("complete_run(run {})", id);
  const std::string provenance_json = dump_json(results.provenance, "the provenance of " + context, db.path());
  Transaction t(db, Transaction::Kind::write, context);
  require_running(db, id, "complete");
  write_metrics(db, id, results.metrics);
  write_datacenters(db, id, results.datacenters);
  write_breakdown(db, id, results.breakdown);
  write_series(db, id, results.series);
  write_requests(db, id, results.requests);
  {
    Stmt s(db,
           "UPDATE runs SET status = 'complete', provenance_json = ?2, finished_at_utc = " MOESIM_NOW_UTC
           " WHERE id = ?1",
           context);
    s.bind(1, id).bind(2, provenance_json);
    s.run();
  }
  t.commit();
}

void Store::fail_run(std::int64_t id, const std::string& message) {
  impl_->require_writable("fail_run");
  Db& db = impl_->db;
  const std::string context = fmt::format("fail_run(run {})", id);
  Transaction t(db, Transaction::Kind::write, context);
  require_running(db, id, "fail");
  {
    Stmt s(db,
           "UPDATE runs SET status = 'failed', error_message = ?2, finished_at_utc = " MOESIM_NOW_UTC
           " WHERE id = ?1",
           context);
    s.bind(1, id).bind(2, message);
    s.run();
  }
  t.commit();
}

std::vector<RunSummary> Store::list_runs(std::optional<std::int64_t> comparison_id) const {
  Db& db = impl_->db;
  Stmt s(db,
         "SELECT r.id, r.scenario_name, r.status, r.created_at_utc, r.comparison_id, r.alternative_label, r.kind, "
         "  coalesce(r.point_hash, ''), "
         "  (SELECT m.value FROM metrics m WHERE m.run_id = r.id AND m.name = ?1), "
         "  (SELECT sum(d.facility_energy_j) FROM datacenter_results d WHERE d.run_id = r.id), "
         "  (SELECT sum(d.co2e_gross_kg) FROM datacenter_results d WHERE d.run_id = r.id) "
         "FROM runs r WHERE ?2 IS NULL OR r.comparison_id = ?2 ORDER BY r.id",
         "list_runs");
  s.bind(1, metric_names::kTrainTime_s).bind(2, comparison_id);
  std::vector<RunSummary> out;
  while (s.step()) {
    RunSummary r;
    r.id = s.int64(0);
    r.scenario_name = s.text(1);
    r.status = parse_status(s.text(2), db.path());
    r.created_at_utc = s.text(3);
    r.comparison_id = s.optional_int64(4);
    r.alternative_label = s.text(5);
    r.kind = s.text(6);
    r.point_hash = s.text(7);
    if (auto train_s = s.optional_real(8)) r.train_days = units::seconds_to_days(*train_s);
    if (auto facility_j = s.optional_real(9)) r.facility_energy_mwh = units::joules_to_mwh(*facility_j);
    if (auto co2e_kg = s.optional_real(10)) r.co2e_gross_t = units::kg_to_tonnes(*co2e_kg);
    out.push_back(std::move(r));
  }
  return out;
}

RunRecord Store::get_run(std::int64_t id) const {
  Db& db = impl_->db;
  const std::string context = fmt::format("get_run({})", id);
  // One read transaction: every table is read from the same snapshot.
  Transaction t(db, Transaction::Kind::read, context);
  RunRecord r;
  {
    Stmt s(db,
           "SELECT id, scenario_name, scenario_file, scenario_json, seed, moesim_version, git_hash, status, "
           "error_message, created_at_utc, finished_at_utc, comparison_id, alternative_label, provenance_json, kind, "
           "coalesce(point_hash, '') FROM runs WHERE id = ?1",
           context);
    s.bind(1, id);
    if (!s.step()) throw_no_run(id, db.path());
    r.id = s.int64(0);
    r.scenario_name = s.text(1);
    r.scenario_file = s.text(2);
    r.scenario = parse_json(s.text(3), fmt::format("scenario of run {}", id), db.path());
    r.seed = seed_from_sql(s.int64(4));
    r.moesim_version = s.text(5);
    r.git_hash = s.text(6);
    r.status = parse_status(s.text(7), db.path());
    r.error_message = s.text(8);
    r.created_at_utc = s.text(9);
    r.finished_at_utc = s.text(10);
    r.comparison_id = s.optional_int64(11);
    r.alternative_label = s.text(12);
    r.provenance = parse_json(s.text(13), fmt::format("provenance of run {}", id), db.path());
    r.kind = s.text(14);
    r.point_hash = s.text(15);
  }
  {
    Stmt s(db, "SELECT name, value, unit FROM metrics WHERE run_id = ?1 ORDER BY position", context);
    s.bind(1, id);
    while (s.step()) r.metrics.push_back(Metric{s.text(0), s.real(1), s.text(2)});
  }
  {
    Stmt s(db,
           "SELECT name, display_name, country_iso_code, region, share, chips, pue, gross_kgco2e_per_kwh, "
           "net_kgco2e_per_kwh, cfe_fraction, it_energy_j, network_energy_j, facility_energy_j, co2e_gross_kg, "
           "co2e_net_kg, embodied_co2e_kg FROM datacenter_results WHERE run_id = ?1 ORDER BY position",
           context);
    s.bind(1, id);
    while (s.step()) {
      DatacenterResult d;
      d.name = s.text(0);
      d.display_name = s.text(1);
      d.country_iso_code = s.text(2);
      d.region = s.text(3);
      d.share = s.real(4);
      d.chips = static_cast<int>(s.int64(5));
      d.pue = s.real(6);
      d.gross_kgco2e_per_kwh = s.real(7);
      d.net_kgco2e_per_kwh = s.optional_real(8);
      d.cfe_fraction = s.optional_real(9);
      d.it_energy_j = s.real(10);
      d.network_energy_j = s.real(11);
      d.facility_energy_j = s.real(12);
      d.co2e_gross_kg = s.real(13);
      d.co2e_net_kg = s.real(14);
      d.embodied_co2e_kg = s.real(15);
      r.datacenters.push_back(std::move(d));
    }
  }
  {
    Stmt s(db,
           "SELECT phase_kind, time_s, critical_path_s FROM phase_breakdown WHERE run_id = ?1 ORDER BY position",
           context);
    s.bind(1, id);
    while (s.step()) r.breakdown.push_back(PhaseBreakdown{s.text(0), s.real(1), s.real(2)});
  }
  {
    Stmt s(db, "SELECT id, name, x_unit, y_unit FROM series WHERE run_id = ?1 ORDER BY position", context);
    Stmt p(db, "SELECT x, y FROM series_points WHERE series_id = ?1 ORDER BY idx", context);
    s.bind(1, id);
    while (s.step()) {
      Series ser;
      ser.name = s.text(1);
      ser.x_unit = s.text(2);
      ser.y_unit = s.text(3);
      p.bind(1, s.int64(0));
      while (p.step()) {
        ser.x.push_back(p.real(0));
        ser.y.push_back(p.real(1));
      }
      p.reset();
      r.series.push_back(std::move(ser));
    }
  }
  t.commit();
  return r;
}

std::vector<RequestTiming> Store::request_timings(std::int64_t id) const {
  Db& db = impl_->db;
  const std::string context = fmt::format("request_timings({})", id);
  Stmt s(db,
         "SELECT arrival_s, first_token_s, end_s, queue_s, prompt_tokens, output_tokens, replica, preemptions "
         "FROM request_timings WHERE run_id = ?1 ORDER BY idx",
         context);
  s.bind(1, id);
  std::vector<RequestTiming> out;
  while (s.step())
    out.push_back({s.real(0), s.real(1), s.real(2), s.real(3), static_cast<int>(s.int64(4)), static_cast<int>(s.int64(5)),
                   static_cast<int>(s.int64(6)), static_cast<int>(s.int64(7))});
  return out;
}

bool Store::has_run(std::int64_t id) const {
  return row_exists(impl_->db, "SELECT 1 FROM runs WHERE id = ?1", id, fmt::format("has_run({})", id));
}

Comparison Store::get_comparison(std::int64_t id) const {
  Db& db = impl_->db;
  const std::string context = fmt::format("get_comparison({})", id);
  Transaction t(db, Transaction::Kind::read, context);
  Comparison c;
  {
    Stmt s(db, "SELECT id, scenario_name, created_at_utc FROM comparisons WHERE id = ?1", context);
    s.bind(1, id);
    if (!s.step()) throw Error(fmt::format("no comparison with id {} in {}", id, db.path()));
    c.id = s.int64(0);
    c.scenario_name = s.text(1);
    c.created_at_utc = s.text(2);
  }
  {
    Stmt s(db, "SELECT id FROM runs WHERE comparison_id = ?1 ORDER BY id", context);
    s.bind(1, id);
    while (s.step()) c.run_ids.push_back(s.int64(0));
  }
  t.commit();
  return c;
}

bool Store::has_comparison(std::int64_t id) const {
  return row_exists(impl_->db, "SELECT 1 FROM comparisons WHERE id = ?1", id, fmt::format("has_comparison({})", id));
}

namespace {
void bind_text_or_null(Stmt& s, int index, const std::string& value) {
  if (value.empty())
    s.bind_null(index);
  else
    s.bind(index, value);
}
}  // namespace

std::int64_t Store::open_sweep(const std::string& scenario_name, const std::string& definition_hash,
                               std::int64_t point_count, const nlohmann::json& axes, const nlohmann::json& overrides) {
  impl_->require_writable("open_sweep");
  if (!overrides.is_array())
    throw Error(fmt::format("run store {}: open_sweep('{}'): the overrides must be a JSON array", impl_->db.path(), scenario_name));
  Db& db = impl_->db;
  const std::string context = fmt::format("open_sweep('{}')", scenario_name);
  Transaction t(db, Transaction::Kind::write, context);
  std::int64_t id = 0;
  {
    Stmt s(db, "SELECT id FROM sweeps WHERE definition_hash = ?1", context);
    s.bind(1, definition_hash);
    if (s.step()) return s.int64(0);  // nothing written; the transaction ends with t
  }
  {
    Stmt s(db,
           "INSERT INTO sweeps (scenario_name, definition_hash, point_count, axes_json, overrides_json, created_at_utc) "
           "VALUES (?1, ?2, ?3, ?4, ?5, " MOESIM_NOW_UTC ") RETURNING id",
           context);
    s.bind(1, scenario_name).bind(2, definition_hash).bind(3, point_count).bind(4, dump_json(axes, "sweep axes", db.path()));
    s.bind(5, dump_json(overrides, "sweep overrides", db.path()));
    if (!s.step()) throw Error(fmt::format("run store {}: {}: INSERT returned no id", db.path(), context));
    id = s.int64(0);
    s.reset();
  }
  t.commit();
  return id;
}

void Store::set_sweep_point(std::int64_t sweep_id, const SweepPointRecord& p) {
  impl_->require_writable("set_sweep_point");
  Db& db = impl_->db;
  const std::string context = fmt::format("set_sweep_point(sweep {}, point {})", sweep_id, p.index);
  Transaction t(db, Transaction::Kind::write, context);
  {
    Stmt s(db,
           "INSERT INTO sweep_points (sweep_id, idx, label, point_hash, skip_reason, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
           "ON CONFLICT (sweep_id, idx) DO UPDATE SET label = excluded.label, point_hash = excluded.point_hash, "
           "skip_reason = excluded.skip_reason, run_id = excluded.run_id",
           context);
    s.bind(1, sweep_id).bind(2, p.index).bind(3, p.label);
    bind_text_or_null(s, 4, p.point_hash);
    bind_text_or_null(s, 5, p.skip_reason);
    s.bind(6, p.run_id);
    s.run();
  }
  t.commit();
}

std::optional<std::int64_t> Store::find_complete_run(const std::string& point_hash) const {
  Stmt s(impl_->db, "SELECT min(id) FROM runs WHERE point_hash = ?1 AND status = 'complete'",
         fmt::format("find_complete_run({})", point_hash));
  s.bind(1, point_hash);
  if (!s.step()) return std::nullopt;
  return s.optional_int64(0);
}

namespace {
SweepRecord read_sweep_row(Stmt& s, const std::string& path) {
  SweepRecord r;
  r.id = s.int64(0);
  r.scenario_name = s.text(1);
  r.definition_hash = s.text(2);
  r.point_count = s.int64(3);
  r.axes = parse_json(s.text(4), fmt::format("axes of sweep {}", r.id), path);
  r.created_at_utc = s.text(5);
  r.overrides = parse_json(s.text(6), fmt::format("overrides of sweep {}", r.id), path);
  return r;
}
constexpr const char* kSweepColumns =
    "SELECT id, scenario_name, definition_hash, point_count, axes_json, created_at_utc, overrides_json FROM sweeps";
}  // namespace

SweepRecord Store::get_sweep(std::int64_t id) const {
  Db& db = impl_->db;
  const std::string context = fmt::format("get_sweep({})", id);
  Transaction t(db, Transaction::Kind::read, context);
  SweepRecord r;
  {
    Stmt s(db, (std::string(kSweepColumns) + " WHERE id = ?1").c_str(), context);
    s.bind(1, id);
    if (!s.step()) throw Error(fmt::format("no sweep with id {} in {}", id, db.path()));
    r = read_sweep_row(s, db.path());
  }
  {
    Stmt s(db,
           "SELECT p.idx, p.label, coalesce(p.point_hash, ''), coalesce(p.skip_reason, ''), p.run_id, r.status "
           "FROM sweep_points p LEFT JOIN runs r ON r.id = p.run_id WHERE p.sweep_id = ?1 ORDER BY p.idx",
           context);
    s.bind(1, id);
    while (s.step()) {
      SweepPointRecord p;
      p.index = s.int64(0);
      p.label = s.text(1);
      p.point_hash = s.text(2);
      p.skip_reason = s.text(3);
      p.run_id = s.optional_int64(4);
      if (!s.is_null(5)) p.run_status = parse_status(s.text(5), db.path());
      r.points.push_back(std::move(p));
    }
  }
  t.commit();
  return r;
}

std::vector<SweepRecord> Store::list_sweeps() const {
  Db& db = impl_->db;
  Stmt s(db, (std::string(kSweepColumns) + " ORDER BY id").c_str(), "list_sweeps");
  std::vector<SweepRecord> out;
  while (s.step()) out.push_back(read_sweep_row(s, db.path()));
  return out;
}

namespace {

/** Copies runs of the attached `shard`, with every result row, into main. The statements are prepared once per
 *  shard and reused for each run (preparing eight statements per run was a fifth of a 10,000-run merge). */
class RunCopier {
 public:
  RunCopier(Db& db, const std::string& context)
      : db_(db),
        context_(context),
        run_(db,
             "INSERT INTO main.runs (scenario_name, scenario_file, scenario_json, seed, moesim_version, git_hash, status, "
             "error_message, created_at_utc, finished_at_utc, comparison_id, alternative_label, provenance_json, kind, "
             "point_hash) SELECT scenario_name, scenario_file, scenario_json, seed, moesim_version, git_hash, status, "
             "error_message, created_at_utc, finished_at_utc, NULL, alternative_label, provenance_json, kind, point_hash "
             "FROM shard.runs WHERE id = ?1 RETURNING id",
             context),
        series_(db, "SELECT id, position, name, x_unit, y_unit FROM shard.series WHERE run_id = ?1 ORDER BY position", context),
        series_insert_(db,
                       "INSERT INTO main.series (run_id, position, name, x_unit, y_unit) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                       context),
        points_(db,
                "INSERT INTO main.series_points (series_id, idx, x, y) SELECT ?2, idx, x, y FROM shard.series_points "
                "WHERE series_id = ?1",
                context) {
    const char* children[] = {
        "INSERT INTO main.metrics (run_id, position, name, value, unit) "
        "SELECT ?2, position, name, value, unit FROM shard.metrics WHERE run_id = ?1",
        "INSERT INTO main.datacenter_results (run_id, position, name, display_name, country_iso_code, region, share, chips, "
        "pue, gross_kgco2e_per_kwh, net_kgco2e_per_kwh, cfe_fraction, it_energy_j, network_energy_j, facility_energy_j, "
        "co2e_gross_kg, co2e_net_kg, embodied_co2e_kg) SELECT ?2, position, name, display_name, country_iso_code, region, "
        "share, chips, pue, gross_kgco2e_per_kwh, net_kgco2e_per_kwh, cfe_fraction, it_energy_j, network_energy_j, "
        "facility_energy_j, co2e_gross_kg, co2e_net_kg, embodied_co2e_kg FROM shard.datacenter_results WHERE run_id = ?1",
        "INSERT INTO main.phase_breakdown (run_id, position, phase_kind, time_s, critical_path_s) "
        "SELECT ?2, position, phase_kind, time_s, critical_path_s FROM shard.phase_breakdown WHERE run_id = ?1",
        "INSERT INTO main.request_timings (run_id, idx, arrival_s, first_token_s, end_s, queue_s, prompt_tokens, "
        "output_tokens, replica, preemptions) SELECT ?2, idx, arrival_s, first_token_s, end_s, queue_s, prompt_tokens, "
        "output_tokens, replica, preemptions FROM shard.request_timings WHERE run_id = ?1",
    };
    for (const char* sql : children) children_.push_back(std::make_unique<Stmt>(db, sql, context));
  }

  /** Copies run `old_id`; returns its id here. */
  std::int64_t copy(std::int64_t old_id) {
    const std::string context = fmt::format("{}: run {}", context_, old_id);
    run_.set_context(context);
    run_.bind(1, old_id);
    if (!run_.step()) {
      run_.reset();
      throw Error(fmt::format("run store {}: {}: run {} of the shard vanished", db_.path(), context, old_id));
    }
    const std::int64_t id = run_.int64(0);
    run_.reset();
    for (auto& s : children_) {
      s->set_context(context);
      s->bind(1, old_id).bind(2, id);
      s->run();
      s->reset();
    }
    series_.set_context(context);
    series_.bind(1, old_id);
    while (series_.step()) {
      series_insert_.set_context(context);
      series_insert_.bind(1, id).bind(2, series_.int64(1)).bind(3, series_.text(2)).bind(4, series_.text(3)).bind(5, series_.text(4));
      if (!series_insert_.step()) {
        series_insert_.reset();
        series_.reset();
        throw Error(fmt::format("run store {}: {}: INSERT returned no id", db_.path(), context));
      }
      const std::int64_t new_series = series_insert_.int64(0);
      series_insert_.reset();
      points_.set_context(context);
      points_.bind(1, series_.int64(0)).bind(2, new_series);
      points_.run();
      points_.reset();
    }
    series_.reset();
    return id;
  }

 private:
  Db& db_;
  std::string context_;
  Stmt run_;
  Stmt series_;
  Stmt series_insert_;
  Stmt points_;
  std::vector<std::unique_ptr<Stmt>> children_;
};

/** Detaches `shard` from the connection whatever happens (ATTACH outlives transactions). */
struct Attached {
  Db& db;
  ~Attached() {
    try {
      db.exec("DETACH DATABASE shard", "detach the shard");
    } catch (const std::exception&) {
    }
  }
};

}  // namespace

MergeStats Store::merge_from(const std::string& shard_path) {
  impl_->require_writable("merge_from");
  Db& db = impl_->db;
  {
    std::error_code ec;
    if (!std::filesystem::exists(shard_path, ec))
      throw Error(fmt::format("cannot merge {}: no such file", shard_path));
    if (std::filesystem::equivalent(shard_path, db.path(), ec))
      throw Error(fmt::format("cannot merge {}: it is the output store itself", shard_path));
  }
  // The shard as a store: a moesim store of this schema version (open_schema refuses others, naming the file).
  try {
    Store shard(shard_path, Mode::read_only);
    if (shard.schema_version() != kSchemaVersion)
      throw Error(fmt::format("schema version {} differs from this store's {}", shard.schema_version(), kSchemaVersion));
    Stmt s(shard.impl_->db, "PRAGMA integrity_check", "integrity check");
    std::vector<std::string> problems;
    while (s.step()) problems.push_back(s.text(0));
    if (problems.size() != 1 || problems[0] != "ok") {
      std::string text;
      for (std::size_t i = 0; i < problems.size() && i < 5; ++i) text += (i ? "; " : "") + problems[i];
      throw Error(fmt::format("PRAGMA integrity_check failed: {}", text));
    }
  } catch (const Error& e) {
    throw Error(fmt::format("cannot merge {}: {}", shard_path, e.what()));
  }
  {
    Stmt a(db, "ATTACH DATABASE ?1 AS shard", fmt::format("attach {}", shard_path));
    a.bind(1, shard_path);
    a.run();
  }
  Attached attached{db};
  const std::string context = fmt::format("merge {}", shard_path);
  Transaction t(db, Transaction::Kind::write, context);
  MergeStats stats;
  // Sweeps, matched by definition hash.
  std::map<std::int64_t, std::int64_t> sweep_map;
  {
    Stmt s(db,
           "SELECT id, scenario_name, definition_hash, point_count, axes_json, created_at_utc, overrides_json FROM "
           "shard.sweeps ORDER BY id",
           context);
    Stmt find(db, "SELECT id FROM main.sweeps WHERE definition_hash = ?1", context);
    Stmt insert(db,
                "INSERT INTO main.sweeps (scenario_name, definition_hash, point_count, axes_json, created_at_utc, "
                "overrides_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                context);
    while (s.step()) {
      find.bind(1, s.text(2));
      if (find.step()) {
        sweep_map[s.int64(0)] = find.int64(0);
      } else {
        insert.bind(1, s.text(1)).bind(2, s.text(2)).bind(3, s.int64(3)).bind(4, s.text(4)).bind(5, s.text(5)).bind(6, s.text(6));
        if (!insert.step()) throw Error(fmt::format("run store {}: {}: INSERT returned no id", db.path(), context));
        sweep_map[s.int64(0)] = insert.int64(0);
        insert.reset();
        ++stats.sweeps_added;
      }
      find.reset();
    }
  }
  // Runs with a point hash, deduplicated: a complete run here wins; else a complete shard run is copied; a failed
  // one is copied only when nothing of that hash is here.
  std::map<std::int64_t, std::int64_t> run_map;
  {
    RunCopier copier(db, context);
    Stmt s(db, "SELECT id, point_hash, status FROM shard.runs ORDER BY id", context);
    Stmt complete(db, "SELECT min(id) FROM main.runs WHERE point_hash = ?1 AND status = 'complete'", context);
    Stmt any(db, "SELECT min(id) FROM main.runs WHERE point_hash = ?1", context);
    while (s.step()) {
      const std::int64_t old_id = s.int64(0);
      const std::string status = s.text(2);
      if (s.is_null(1) || status == "running") {
        ++stats.runs_left_out;
        continue;
      }
      const std::string hash = s.text(1);
      complete.bind(1, hash);
      complete.step();
      const std::optional<std::int64_t> here = complete.optional_int64(0);
      complete.reset();
      if (here) {
        run_map[old_id] = *here;
        ++stats.runs_already_present;
        continue;
      }
      if (status == "failed") {
        any.bind(1, hash);
        any.step();
        const std::optional<std::int64_t> failed_here = any.optional_int64(0);
        any.reset();
        if (failed_here) {
          run_map[old_id] = *failed_here;
          ++stats.runs_already_present;
          continue;
        }
      }
      run_map[old_id] = copier.copy(old_id);
      ++stats.runs_copied;
    }
  }
  // Points: a point is added when absent; one here without a complete run takes the shard's when that is complete.
  {
    Stmt s(db,
           "SELECT p.sweep_id, p.idx, p.label, coalesce(p.point_hash, ''), coalesce(p.skip_reason, ''), p.run_id, r.status "
           "FROM shard.sweep_points p LEFT JOIN shard.runs r ON r.id = p.run_id ORDER BY p.sweep_id, p.idx",
           context);
    Stmt here(db,
              "SELECT r.status FROM main.sweep_points p LEFT JOIN main.runs r ON r.id = p.run_id "
              "WHERE p.sweep_id = ?1 AND p.idx = ?2",
              context);
    Stmt upsert(db,
                "INSERT INTO main.sweep_points (sweep_id, idx, label, point_hash, skip_reason, run_id) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (sweep_id, idx) DO UPDATE SET label = excluded.label, "
                "point_hash = excluded.point_hash, skip_reason = excluded.skip_reason, run_id = excluded.run_id",
                context);
    while (s.step()) {
      const std::int64_t sweep = sweep_map.at(s.int64(0));
      const std::int64_t idx = s.int64(1);
      std::optional<std::int64_t> run;
      if (auto old = s.optional_int64(5); old && run_map.count(*old)) run = run_map.at(*old);
      const bool shard_complete = run && !s.is_null(6) && s.text(6) == "complete";
      here.bind(1, sweep).bind(2, idx);
      const bool exists = here.step();
      const bool here_complete = exists && !here.is_null(0) && here.text(0) == "complete";
      here.reset();
      if (exists && (here_complete || !shard_complete)) continue;
      upsert.bind(1, sweep).bind(2, idx).bind(3, s.text(2));
      bind_text_or_null(upsert, 4, s.text(3));
      bind_text_or_null(upsert, 5, s.text(4));
      upsert.bind(6, run);
      upsert.run();
      upsert.reset();
      ++(exists ? stats.points_updated : stats.points_added);
    }
  }
  t.commit();
  return stats;
}

}  // namespace moesim::store

#undef MOESIM_NOW_UTC
