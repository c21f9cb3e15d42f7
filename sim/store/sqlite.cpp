// SPDX-License-Identifier: Apache-2.0
#include "sqlite.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>
#include <sqlite3.h>

#include "moesim/core/error.hpp"

namespace moesim::store::detail {

namespace {

constexpr double kMillisecondsPerSecond = 1000.0;  // definition of the millisecond

/** The directory holding `path` ("." for a bare file name). */
std::string directory_of(const std::string& path) {
  const std::filesystem::path p(path);
  return p.has_parent_path() ? p.parent_path().string() : std::string(".");
}

}  // namespace

std::string describe(int rc, const std::string& path, const std::string& context, const std::string& sqlite_message,
                     double busy_timeout_s, int system_errno) {
  // A full filesystem: SQLite reports SQLITE_FULL, or (writing the WAL) an I/O error whose errno is ENOSPC/EDQUOT.
  if ((rc & 0xff) == SQLITE_FULL || ((rc & 0xff) == SQLITE_IOERR && (system_errno == ENOSPC || system_errno == EDQUOT)))
    return fmt::format("disk full: {}: {}: no space left on the filesystem holding {} (SQLite: {}); free space there "
                       "or give another --db; the transaction was rolled back, nothing half-written",
                       path, context, directory_of(path), sqlite_message);
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
    case SQLITE_IOERR:
      return fmt::format("disk I/O error: {}: {}: {}{} (SQLite: {})", path, context,
                         system_errno != 0 ? std::strerror(system_errno) : "the operating system refused a read or write",
                         fmt::format(" in {}", directory_of(path)), sqlite_message);
    default:
      return fmt::format("run store {}: {}: {}", path, context, sqlite_message);
  }
}

namespace {

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
    if (fs::is_directory(p, ec))
      throw Error(fmt::format("cannot open database: {}: is a directory; give the store's file (e.g. {}/moesim.db)", path,
                              path));
    return;
  }
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) {
    throw Error(fmt::format("cannot open database: {}: directory {} does not exist", path, dir.string()));
  }
  if (fs::is_directory(p, ec))
    throw Error(fmt::format("cannot open database: {}: is a directory; give a file in it (e.g. {}/moesim.db)", path, path));
}

/** How a read-only store is opened, so that reading leaves nothing behind and works from read-only media. */
struct ReadOnlyOpen {
  int flags = 0;
  std::string uri;  ///< what sqlite3_open_v2 gets (a file: URI when immutable)
};

ReadOnlyOpen plan_read_only_open(const std::string& path) {
  namespace fs = std::filesystem;
  const int base = SQLITE_OPEN_EXRESCODE;
  if (is_memory(path)) return {SQLITE_OPEN_READONLY | base, path};
  const std::string dir = directory_of(path);
  const bool dir_writable = ::access(dir.c_str(), W_OK) == 0;
  const bool file_writable = ::access(path.c_str(), W_OK) == 0;
  if (dir_writable && file_writable) {
    // A read-write connection that only reads: as the last connection it checkpoints and removes the -wal and
    // -shm files when it closes (a read-only connection cannot, and leaves them). Store::Mode::read_only still
    // refuses every write before SQLite sees it.
    return {SQLITE_OPEN_READWRITE | base, path};
  }
  std::error_code ec;
  const auto wal_size = fs::file_size(path + "-wal", ec);
  const bool unmerged_wal = !ec && wal_size > 0;
  if (!dir_writable && !unmerged_wal) {
    // A read-only directory (an archive, a read-only mount): WAL readers need a -shm file they cannot create
    // there. With no unmerged -wal the file alone is the whole store and no writer can exist (it would need to
    // create the -wal in this directory), so it is opened immutable: no locks, no -shm.
    std::string uri = "file:";
    for (char c : fs::absolute(path, ec).string()) {
      if (c == '%' || c == '?' || c == '#') uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
      else uri += c;
    }
    return {SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | base, uri + "?immutable=1"};
  }
  return {SQLITE_OPEN_READONLY | base, path};
}

}  // namespace

Db::Db(const std::string& path, bool read_only, double busy_timeout_s)
    : path_(path), busy_timeout_s_(busy_timeout_s) {
  check_path(path, read_only);
  if (!(busy_timeout_s >= 0.0)) {
    throw Error(fmt::format("run store {}: busy timeout must be >= 0 s, got {}", path, busy_timeout_s));
  }
  const ReadOnlyOpen plan = read_only ? plan_read_only_open(path)
                                      : ReadOnlyOpen{SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXRESCODE, path};
  const int rc = sqlite3_open_v2(plan.uri.c_str(), &db_, plan.flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    const int err = db_ != nullptr ? sqlite3_system_errno(db_) : 0;
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw Error(describe(rc, path, "open", message, busy_timeout_s, err));
  }
  if (!read_only && sqlite3_db_readonly(db_, "main") == 1) {
    // SQLite falls back to a read-only open when the file is not writable; say so now rather
    // than at the first write.
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw Error(fmt::format("database is read-only: {}: the file is not writable, so no run can be stored in it "
                            "(commands that only read it, `moesim runs` and `moesim report`, still work; give "
                            "another --db to store runs)",
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
    throw Error(describe(rc, path_, context, message, busy_timeout_s_, sqlite3_system_errno(db_)));
  }
}

void Db::fail(int rc, const std::string& context) const {
  throw Error(describe(rc, path_, context, sqlite3_errmsg(db_), busy_timeout_s_, sqlite3_system_errno(db_)));
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
  throw Error(describe(rc, db_.path(), context_, message, db_.busy_timeout_s(), sqlite3_system_errno(db_.handle())));
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
