// SPDX-License-Identifier: Apache-2.0
#pragma once
// Private to sim/store: the schema as an ordered list of migrations, and the code that brings a
// database up to date when it is opened.
#include <vector>

namespace moesim::store::detail {

class Db;

/** One schema step: the SQL that turns version to_version - 1 (or an empty database, for
 *  version 0) into version to_version. Applied in one transaction with the version bump. */
struct Migration {
  int to_version;
  const char* description;
  const char* sql;
};

/** Every migration, oldest first; the last one's to_version is Store::kSchemaVersion. */
const std::vector<Migration>& migrations();

/** Sets the per-connection pragmas (foreign keys; WAL when writable), checks that the file is a
 *  moesim store, and migrates it (read-write) or refuses it (read-only) when it is older; refuses
 *  a newer one. Returns the schema version the database has afterwards. */
int open_schema(Db& db, bool read_only);

}  // namespace moesim::store::detail
