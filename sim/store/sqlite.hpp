// SPDX-License-Identifier: Apache-2.0
#pragma once
// Private to sim/store: a thin RAII layer over the SQLite C API. Every failure becomes a
// moesim::Error that names the database path, what the store was doing and SQLite's message.
#include <cstdint>
#include <optional>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace moesim::store::detail {

/** The user-facing message for SQLite result code `rc` (primary or extended) on the store at `path`:
 *  what went wrong in plain words ("disk full", "database is locked", ...), where, and SQLite's own message.
 *  `system_errno` is sqlite3_system_errno() of the connection (0 when unknown). */
std::string describe(int rc, const std::string& path, const std::string& context, const std::string& sqlite_message,
                     double busy_timeout_s, int system_errno = 0);

/** One SQLite connection (sqlite3*), closed on destruction. */
class Db {
 public:
  /** Opens `path` read-write (creating it) or read-only; sets the busy timeout and extended
   *  result codes. Does not touch the schema. */
  Db(const std::string& path, bool read_only, double busy_timeout_s);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }
  double busy_timeout_s() const { return busy_timeout_s_; }

  /** Runs one or more SQL statements without parameters (schema, pragmas, BEGIN/COMMIT). */
  void exec(const std::string& sql, const std::string& context);
  /** Throws the Error for SQLite result code `rc`, using the connection's message. */
  [[noreturn]] void fail(int rc, const std::string& context) const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  double busy_timeout_s_;
};

/** A prepared statement (sqlite3_stmt*), finalized on destruction. Parameters are 1-based, columns
 *  0-based, as in the C API. */
class Stmt {
 public:
  Stmt(Db& db, const char* sql, std::string context);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int index, std::int64_t value);
  Stmt& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  /** Throws for NaN, which SQLite would silently store as NULL. */
  Stmt& bind(int index, double value);
  Stmt& bind(int index, const std::string& value);
  Stmt& bind(int index, const char* value) { return bind(index, std::string(value)); }
  Stmt& bind(int index, const std::optional<double>& value);
  Stmt& bind(int index, const std::optional<std::int64_t>& value);
  Stmt& bind_null(int index);

  /** Advances; true when a row is available, false when done. */
  bool step();
  /** Steps a statement that returns no rows (INSERT/UPDATE). */
  void run();
  /** Clears bindings and rewinds, for reuse with new parameters. */
  void reset();
  /** Changes the context named in errors (e.g. which metric is being written). */
  void set_context(std::string context) { context_ = std::move(context); }

  bool is_null(int column) const;
  std::int64_t int64(int column) const;
  double real(int column) const;
  std::string text(int column) const;
  std::optional<double> optional_real(int column) const;
  std::optional<std::int64_t> optional_int64(int column) const;

 private:
  Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string context_;
};

/** A transaction, rolled back on destruction unless commit() was called. Writers begin
 *  IMMEDIATE (take the write lock up front, so they wait on the busy timeout instead of
 *  deadlocking on a lock upgrade); readers begin DEFERRED (one consistent snapshot). */
class Transaction {
 public:
  enum class Kind { read, write };
  Transaction(Db& db, Kind kind, std::string context);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Db& db_;
  std::string context_;
  bool open_ = false;
};

}  // namespace moesim::store::detail
