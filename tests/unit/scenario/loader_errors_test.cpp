// SPDX-License-Identifier: Apache-2.0
// Per-field input errors of the scenario loader: "errors name file:line:column, the key and what is
// allowed". Each SECTION changes one line of a valid scenario (or loads a fixture from
// tests/data/scenario/) and checks InputError::file(), line(), column(), key() and the message.
// Expected positions are looked up in the text under test.

#include <catch2/catch.hpp>

#include "moesim/core/text.hpp"
#include "scenario_test_support.hpp"

using moesim::InputError;
using moesim::scenario::load_file;
namespace t = moesim::scenario::test;

TEST_CASE("scenario::load_string: the base fixture is valid", "[scenario][loader]") {
  // Every error test below mutates this text; if it did not load, they would test nothing.
  REQUIRE_NOTHROW(t::load(t::base_yaml()));
}

TEST_CASE("scenario::load_file: YAML syntax errors name the file, line and column", "[scenario][loader]") {
  SECTION("unclosed flow mapping (fixture)") {
    const std::string file = t::data("syntax_error.yaml");
    const auto e = t::expect_input_error([&] { load_file(file, t::real_catalog()); });
    CHECK(e.file() == file);
    CHECK(t::contains(e.message(), "YAML syntax error"));
    CHECK(e.key().empty());
    // yaml-cpp reports the flow mapping's end: on or after the line that opens it.
    CHECK(e.line() >= t::line_in(t::slurp(file), "model: {layers: 4"));
    CHECK(e.column() >= 1);
    CHECK(t::contains(e.what(), file + ":" + std::to_string(e.line()) + ":" + std::to_string(e.column()) + ": "));
  }
  SECTION("bad indentation inline: the offending line") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  d_ff: 2048", "    d_ff: 2048");
    const auto e = t::load_error(yaml);
    CHECK(e.file() == "test.yaml");
    CHECK(t::contains(e.message(), "YAML syntax error"));
    CHECK(e.line() == t::line_in(yaml, "    d_ff: 2048"));
  }
  SECTION("a missing file is an error naming the path") {
    try {
      load_file(t::data("no_such_file.yaml"), t::real_catalog());
      FAIL("expected moesim::Error");
    } catch (const moesim::Error& e) {
      CHECK(t::contains(e.what(), "no_such_file.yaml"));
    }
  }
}

TEST_CASE("scenario::load_string: empty documents are errors", "[scenario][loader]") {
  for (const std::string& yaml : {std::string(""), std::string("# only a comment\n"), std::string("~\n")}) {
    INFO("'" << yaml << "'");
    const auto e = t::load_error(yaml);
    CHECK(e.file() == "test.yaml");
    CHECK(e.line() == 1);
    CHECK(e.column() == 1);
    CHECK(t::contains(e.message(), "empty"));
  }
  SECTION("empty fixture file") {
    const std::string file = t::data("empty.yaml");
    const auto e = t::expect_input_error([&] { load_file(file, t::real_catalog()); });
    CHECK(e.file() == file);
    CHECK(t::contains(e.message(), "empty"));
  }
}

TEST_CASE("scenario::load_string: unknown keys list the allowed keys and suggest the closest", "[scenario][loader]") {
  SECTION("top level") {
    const std::string yaml = t::replace_line(t::base_yaml(), "training:", "trainng:");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "trainng");
    CHECK(e.line() == t::line_in(yaml, "trainng:"));
    CHECK(e.column() == 1);
    CHECK(t::contains(e.message(), "unknown key"));
    CHECK(t::contains(e.message(), "did you mean 'training'?"));
    CHECK(t::contains(e.message(), "allowed at top level"));
    for (const char* k : {"name", "model", "training", "routing", "parallelism", "cluster", "placement", "wan"})
      CHECK(t::contains(e.message(), k));
  }
  SECTION("nested, with the section named") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  d_ff: 2048", "  d_ff: 2048\n  dmodel_x: 3");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.dmodel_x");
    CHECK(e.line() == t::line_in(yaml, "dmodel_x"));
    CHECK(e.column() == 3);
    CHECK(t::contains(e.message(), "in 'model'"));
    CHECK(t::contains(e.message(), "d_model, d_ff"));
  }
  SECTION("a close misspelling is suggested") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  top_k: 2", "  topk: 2");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.topk");
    CHECK(t::contains(e.message(), "did you mean 'top_k'?"));
  }
  SECTION("no suggestion for a name far from every key") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  top_k: 2", "  completely_unrelated_words: 2");
    const auto e = t::load_error(yaml);
    CHECK_FALSE(t::contains(e.message(), "did you mean"));
    CHECK(t::contains(e.message(), "top_k"));  // still lists what is allowed
  }
  SECTION("inside a list item (fixture)") {
    const std::string file = t::data("unknown_key_nested.yaml");
    const auto e = t::expect_input_error([&] { load_file(file, t::real_catalog()); });
    CHECK(e.file() == file);
    CHECK(e.key() == "placement[0].shar");
    CHECK(e.line() == t::line_in(t::slurp(file), "shar: 1.0"));
    CHECK(e.column() == t::column_in(t::slurp(file), "shar: 1.0", "shar"));
    CHECK(t::contains(e.message(), "did you mean 'share'?"));
    CHECK(t::contains(e.message(), "in 'placement[]'"));
  }
}

TEST_CASE("scenario::load_string: wrong value types name the key and what was expected", "[scenario][loader]") {
  SECTION("string for an integer") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  d_model: 512", "  d_model: big");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.d_model");
    CHECK(e.line() == t::line_in(yaml, "d_model: big"));
    CHECK(e.column() == t::column_in(yaml, "d_model: big", "big"));
    CHECK(t::contains(e.message(), "expected an integer, got 'big'"));
  }
  SECTION("2.5 for an integer") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  heads: 8", "  heads: 2.5");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.heads");
    CHECK(e.line() == t::line_in(yaml, "heads: 2.5"));
    CHECK(e.column() == t::column_in(yaml, "heads: 2.5", "2.5"));
    CHECK(t::contains(e.message(), "expected an integer, got '2.5'"));
  }
  SECTION("a list for a scalar") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  vocab: 32000", "  vocab: [1, 2]");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.vocab");
    CHECK(e.line() == t::line_in(yaml, "vocab: [1, 2]"));
    CHECK(e.column() == t::column_in(yaml, "vocab: [1, 2]", "["));
    CHECK(t::contains(e.message(), "expected an integer, got <sequence>"));
  }
  SECTION("a mapping where a list is expected") {
    const std::string yaml =
        t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023", "  datacenter: gcp_us_central1_2023");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement");
    CHECK(e.line() == t::line_in(yaml, "  datacenter: gcp_us"));
    CHECK(t::contains(e.message(), "expected a list of mappings, got <mapping>"));
  }
  SECTION("a mapping where a list of numbers is expected") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  count: 8", "  count: 8\n  topology: {dims: {x: 2}}");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster.topology.dims");
    CHECK(t::contains(e.message(), "expected a list, got <mapping>"));
  }
  SECTION("a bad item inside a list names its index") {
    const std::string yaml =
        t::replace_line(t::base_yaml(), "  count: 8", "  count: 8\n  topology: {type: torus_2d, dims: [2, x]}");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster.topology.dims[1]");
    CHECK(e.line() == t::line_in(yaml, "dims: [2, x]"));
    CHECK(e.column() == t::column_in(yaml, "dims: [2, x]", "x"));
  }
  SECTION("a scalar where a section is expected") {
    const std::string yaml = t::replace_line(t::base_yaml(), "parallelism:", "parallelism: 8");
    const std::string yaml2 = t::remove_line(yaml, "  expert: 8");
    const auto e = t::load_error(yaml2);
    CHECK(e.key() == "parallelism");
    CHECK(t::contains(e.message(), "expected a mapping with keys (data, expert, tensor, pipeline"));
    CHECK(t::contains(e.message(), "got 8"));
  }
  SECTION("a word for a boolean") {
    const std::string yaml = t::base_yaml() + "routing:\n  dropless: maybe\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "routing.dropless");
    CHECK(e.line() == t::line_in(yaml, "dropless: maybe"));
    CHECK(t::contains(e.message(), "expected true or false, got 'maybe'"));
  }
  SECTION("a word and NaN for a number") {
    for (const std::string bad : {"lots", "nan", ".inf"}) {
      INFO(bad);
      const std::string yaml = t::replace_line(t::base_yaml(), "  tokens: 1.0e9", "  tokens: " + bad);
      const auto e = t::load_error(yaml);
      CHECK(e.key() == "training.tokens");
      CHECK(e.line() == t::line_in(yaml, "  tokens: " + bad));
      CHECK(t::contains(e.message(), "expected a number, got '" + bad + "'"));
    }
  }
  SECTION("an integer too large for the field") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  d_model: 512", "  d_model: 1.0e12");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.d_model");
    CHECK(t::contains(e.message(), "too large"));
  }
}

TEST_CASE("scenario::load_string: out-of-range values name the bound", "[scenario][loader]") {
  struct Case {
    std::string old_line, new_line, key, expect;
  };
  const std::vector<Case> cases = {
      {"  heads: 8", "  heads: 0", "model.heads", "0 is out of range: must be >= 1"},
      {"  d_model: 512", "  d_model: -512", "model.d_model", "-512 is out of range: must be >= 1"},
      {"  top_k: 2", "  top_k: 2\n  capacity_factor: 0", "model.capacity_factor", "0 is out of range: must be > 0"},
      {"  tokens: 1.0e9", "  tokens: 0", "training.tokens", "must be > 0"},
      {"  batch_tokens: 65536", "  batch_tokens: 65536\n  steps_simulated: 101", "training.steps_simulated",
       "101 is out of range: must be <= 100"},
      {"  - datacenter: gcp_us_central1_2023", "  - datacenter: gcp_us_central1_2023\n    share: 1.5",
       "placement[0].share", "1.5 is out of range: must be <= 1"},
      {"  expert: 8", "  expert: 8\n  data: 0", "parallelism.data", "must be >= 1"},
  };
  for (const auto& c : cases) {
    INFO(c.new_line);
    const std::string yaml = t::replace_line(t::base_yaml(), c.old_line, c.new_line);
    const auto e = t::load_error(yaml);
    CHECK(e.key() == c.key);
    const std::string last_line = t::lines_of(c.new_line).back();
    CHECK(e.line() == t::line_in(yaml, last_line));
    CHECK(e.column() == t::column_in(yaml, last_line, ": ") + 2);
    CHECK(t::contains(e.message(), c.expect));
  }
}

TEST_CASE("scenario::load_string: a bad choice lists the allowed values", "[scenario][loader]") {
  SECTION("dtype") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  seq_len: 1024", "  seq_len: 1024\n  dtype: fp4");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.dtype");
    CHECK(e.line() == t::line_in(yaml, "dtype: fp4"));
    CHECK(e.column() == t::column_in(yaml, "dtype: fp4", "fp4"));
    CHECK(t::contains(e.message(), "'fp4' is not allowed"));
    CHECK(t::contains(e.message(), "allowed: fp32, bf16, fp16, fp8"));
  }
  SECTION("a near miss is suggested") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  seq_len: 1024", "  seq_len: 1024\n  activation: swigl");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.activation");
    CHECK(t::contains(e.message(), "did you mean 'swiglu'?"));
    CHECK(t::contains(e.message(), "relu, gelu, swiglu, geglu"));
  }
  SECTION("a far miss gets no misleading suggestion") {
    const std::string yaml = t::base_yaml() + "routing:\n  type: expert_choice_hash\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "routing.type");
    CHECK_FALSE(t::contains(e.message(), "did you mean"));
    CHECK(t::contains(e.message(), "allowed: uniform, zipf, load_vector"));
  }
  SECTION("routing type") {
    const std::string yaml = t::base_yaml() + "routing:\n  type: random\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "routing.type");
    CHECK(t::contains(e.message(), "uniform, zipf, load_vector"));
  }
}

TEST_CASE("scenario::load_string: missing required keys point at the enclosing section", "[scenario][loader]") {
  SECTION("nested") {
    const std::string yaml = t::remove_line(t::base_yaml(), "  d_ff: 2048");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.d_ff");
    CHECK(t::contains(e.message(), "missing required key"));
    CHECK(t::contains(e.message(), "keys of 'model'"));
    // yaml-cpp marks a block mapping at its first key: the first line inside `model:`.
    CHECK(e.line() == t::line_in(yaml, "model:") + 1);
    CHECK(e.column() == 3);
  }
  SECTION("a key given as null counts as missing") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  d_ff: 2048", "  d_ff:");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.d_ff");
    CHECK(t::contains(e.message(), "missing required key"));
  }
  SECTION("top level") {
    std::string yaml = t::remove_line(t::base_yaml(), "cluster:");
    yaml = t::remove_line(yaml, "  accelerator: h100");
    yaml = t::remove_line(yaml, "  count: 8");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster");
    CHECK(e.file() == "test.yaml");
    CHECK(e.line() == 1);
    CHECK(t::contains(e.message(), "missing required key"));
  }
  SECTION("inside a list item") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023", "  - share: 1.0");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].datacenter");
    CHECK(e.line() == t::line_in(yaml, "- share: 1.0"));
  }
}

TEST_CASE("scenario::InputError: what() is file:line:column: key: message", "[scenario][loader]") {
  const std::string yaml = t::replace_line(t::base_yaml(), "  heads: 8", "  heads: 0");
  const auto e = t::load_error(yaml);
  const std::string expected_prefix = "test.yaml:" + std::to_string(t::line_in(yaml, "heads: 0")) + ":" +
                                      std::to_string(t::column_in(yaml, "heads: 0", "0")) + ": model.heads: ";
  CHECK(std::string(e.what()).rfind(expected_prefix, 0) == 0);
  CHECK(t::contains(e.what(), e.message()));
}

TEST_CASE("scenario::load_string: malformed mapping keys are input errors", "[scenario][loader]") {
  SECTION("a duplicated key (YAML 1.2 §3.2.1.1: mapping keys are unique)") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  d_ff: 2048", "  d_ff: 2048\n  d_model: 1024");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.d_model");
    CHECK(e.line() == t::line_in(yaml, "d_model: 1024"));
    CHECK(e.column() == 3);
    CHECK(t::contains(e.message(), "duplicate key"));
    CHECK(t::contains(e.message(), "first given at line " + std::to_string(t::line_in(yaml, "d_model: 512"))));
  }
  SECTION("a key that is not a scalar") {
    const std::string yaml = t::base_yaml() + "? [a, b]\n: 1\n";
    const auto e = t::load_error(yaml);
    CHECK(e.line() == t::line_in(yaml, "? [a, b]"));
    CHECK(e.key() == "<top level>");
    CHECK(t::contains(e.message(), "a key must be a name, got <sequence>"));
  }
}
