// SPDX-License-Identifier: Apache-2.0
#include "sqlite.hpp"

#include <cmath>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>
#include <sqlite3.h>

#include "moesim/core/error.hpp"

namespace moesim::store::detail {

namespace {

constexpr double kMillisecondsPerSecond = 1000.0;  // definition of the millisecond

/** The user-facing message for SQLite result code `rc` (primary or extended). */
std::string describe(int rc, const std::string& path, const std::string& context, const std::string& sqlite_message,
                     double busy_timeout_s) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return fmt::format("database is locked: {}: {}: another connection held the lock for longer than the "
                         "busy timeout of {} s (SQLite: {})",
                         path, context, busy_timeout_s, sqlite_message);
    case SQLITE_READONLY:
      return fmt::format("database is read-only: {}: {} (SQLite: {})", path, context, sqlite_message);
    case SQLITE_NOTADB:
      return fmt::format("not a SQLite database: {}: {} (SQLite: {})", path, context, sqlite_message);
    case SQLITE_CORRUPT:
      return fmt::format("database is corrupt: {}: {} (SQLite: {})", path, context, sqlite_message);
    case SQLITE_CANTOPEN:
      return fmt::format("cannot open database: {}: {} (SQLite: {})", path, context, sqlite_message);
    default:
      return fmt::format("run store {}: {}: {}", path, context, sqlite_message);
  }
}

bool is_memory(const std::string& path) { return path == ":memory:"; }

/** Filesystem checks that SQLite would answer only with "unable to open database file". */
void check_path(const std::string& path, bool read_only) {
  namespace fs = std::filesystem;
  if (path.empty()) throw Error("run store path is empty");
  if (is_memory(path)) return;
  std::error_code ec;
  const fs::path p(path);
  if (read_only) {
    if (!fs::exists(p, ec)) throw Error(fmt::format("cannot open database: {}: no such file", path));
    return;
  }
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) {
    throw Error(fmt::format("cannot open database: {}: directory {} does not exist", path, dir.string()));
  }
  if (fs::is_directory(p, ec)) throw Error(fmt::format("cannot open database: {}: is a directory", path));
}

}  // namespace

Db::Db(const std::string& path, bool read_only, double busy_timeout_s)
    : path_(path), busy_timeout_s_(busy_timeout_s) {
  check_path(path, read_only);
  if (!(busy_timeout_s >= 0.0)) {
    throw Error(fmt::format("run store {}: busy timeout must be >= 0 s, got {}", path, busy_timeout_s));
  }
  const int flags = (read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
                    SQLITE_OPEN_EXRESCODE;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw Error(describe(rc, path, "open", message, busy_timeout_s));
  }
  if (!read_only && sqlite3_db_readonly(db_, "main") == 1) {
    // SQLite falls back to a read-only open when the file is not writable; say so now rather
    // than at the first write.
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw Error(fmt::format("database is read-only: {}: the file is not writable (open it with Mode::read_only "
                            "to read it)",
                            path));
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, static_cast<int>(std::lround(busy_timeout_s * kMillisecondsPerSecond)));
}

Db::~Db() {
  // sqlite3_close_v2 defers the close until the last statement is finalized; Stmt objects never
  // outlive the Store that owns this Db, so this closes now.
  sqlite3_close_v2(db_);
}

void Db::exec(const std::string& sql, const std::string& context) {
  char* raw_message = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &raw_message);
  if (rc != SQLITE_OK) {
    const std::string message = raw_message != nullptr ? raw_message : sqlite3_errstr(rc);
    sqlite3_free(raw_message);
    throw Error(describe(rc, path_, context, message, busy_timeout_s_));
  }
}

void Db::fail(int rc, const std::string& context) const {
  throw Error(describe(rc, path_, context, sqlite3_errmsg(db_), busy_timeout_s_));
}

Stmt::Stmt(Db& db, const char* sql, std::string context) : db_(db), context_(std::move(context)) {
  const int rc = sqlite3_prepare_v2(db_.handle(), sql, -1, &stmt_, nullptr);
  if (rc != SQLITE_OK) db_.fail(rc, context_);
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Stmt& Stmt::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) db_.fail(rc, context_);
  return *this;
}

Stmt& Stmt::bind(int index, double value) {
  if (std::isnan(value)) {
    const char* name = sqlite3_bind_parameter_name(stmt_, index);
    throw Error(fmt::format("run store {}: {}: {} is NaN, which the store cannot hold (SQLite stores NaN as NULL)",
                            db_.path(), context_, name != nullptr ? std::string(name + 1) : fmt::format("#{}", index)));
  }
  const int rc = sqlite3_bind_double(stmt_, index, value);
  if (rc != SQLITE_OK) db_.fail(rc, context_);
  return *this;
}

Stmt& Stmt::bind(int index, const std::string& value) {
  const int rc = sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_.fail(rc, context_);
  return *this;
}

Stmt& Stmt::bind(int index, const std::optional<double>& value) {
  return value ? bind(index, *value) : bind_null(index);
}

Stmt& Stmt::bind(int index, const std::optional<std::int64_t>& value) {
  return value ? bind(index, *value) : bind_null(index);
}

Stmt& Stmt::bind_null(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) db_.fail(rc, context_);
  return *this;
}

bool Stmt::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) {
    sqlite3_reset(stmt_);
    return false;
  }
  // Read the message before reset, which would replace it.
  const std::string message = sqlite3_errmsg(db_.handle());
  sqlite3_reset(stmt_);
  throw Error(describe(rc, db_.path(), context_, message, db_.busy_timeout_s()));
}

void Stmt::run() {
  if (step()) {
    sqlite3_reset(stmt_);
    throw Error(fmt::format("run store {}: {}: statement returned rows where none were expected", db_.path(),
                            context_));
  }
}

void Stmt::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool Stmt::is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

std::int64_t Stmt::int64(int column) const { return sqlite3_column_int64(stmt_, column); }

double Stmt::real(int column) const { return sqlite3_column_double(stmt_, column); }

std::string Stmt::text(int column) const {
  const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  if (data == nullptr) return {};
  return std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::optional<double> Stmt::optional_real(int column) const {
  if (is_null(column)) return std::nullopt;
  return real(column);
}

std::optional<std::int64_t> Stmt::optional_int64(int column) const {
  if (is_null(column)) return std::nullopt;
  return int64(column);
}

Transaction::Transaction(Db& db, Kind kind, std::string context) : db_(db), context_(std::move(context)) {
  db_.exec(kind == Kind::write ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED", context_);
  open_ = true;
}

Transaction::~Transaction() {
  // SQLite rolls back by itself after some errors (SQLITE_FULL, IOERR, NOMEM, ...): only roll
  // back what is still open. Errors here cannot be reported from a destructor; the next BEGIN
  // would report a connection left in a bad state.
  if (open_ && sqlite3_get_autocommit(db_.handle()) == 0) {
    sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

void Transaction::commit() {
  db_.exec("COMMIT", context_ + ": commit");
  open_ = false;
}

}  // namespace moesim::store::detail
