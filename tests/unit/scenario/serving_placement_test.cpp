// SPDX-License-Identifier: Apache-2.0
// Serving pools over several datacenters: the placement shares against the pools pinned to a datacenter
// (serving.pools[].datacenter). The shares sum to 1 (checked first); with a pinned pool each share must be the
// fraction of the chips the pools put in its datacenter, or every share is left out and derived; every datacenter
// gets chips, in whole GPU nodes. Each mistake is a located error naming the key, the pools that put the chips
// there, and what to change.
#include <catch2/catch.hpp>

#include "scenario_test_support.hpp"

namespace t = moesim::scenario::test;

namespace {

/** Disaggregated serving over two inline datacenters (the audit's dis2.yaml), one key per line: 2 prefill and
 *  2 decode replicas of TP4 on 16 H100s (8 per node), each pool pinned to its own datacenter. */
std::string two_site_yaml() {
  return "name: dis-two-sites\n"
         "model:\n"
         "  layers: 8\n"
         "  d_model: 2048\n"
         "  d_ff: 8192\n"
         "  heads: 16\n"
         "  kv_heads: 4\n"
         "  experts: 8\n"
         "  top_k: 2\n"
         "  vocab: 32000\n"
         "  seq_len: 4096\n"
         "serving:\n"
         "  arrival: {type: constant, rate_per_s: 10}\n"
         "  prompt_length: {type: fixed, value: 1000}\n"
         "  output_length: {type: fixed, value: 101}\n"
         "  duration_s: 10\n"
         "  pools:\n"
         "    - {role: prefill, replicas: 2, tensor: 4, datacenter: siteP}\n"
         "    - {role: decode, replicas: 2, tensor: 4, datacenter: siteD}\n"
         "cluster:\n"
         "  accelerator: h100\n"
         "  count: 16\n"
         "placement:\n"
         "  - datacenter: {name: siteP, pue: 1.2, gross_kgco2e_per_kwh: 0.5}\n"
         "    share: 0.5\n"
         "  - datacenter: {name: siteD, pue: 1.5, gross_kgco2e_per_kwh: 0.2}\n"
         "    share: 0.5\n"
         "wan: {bandwidth_gbps: 10, latency_ms: 50}\n";
}

const char* kPrefill = "    - {role: prefill, replicas: 2, tensor: 4, datacenter: siteP}";
const char* kDecode = "    - {role: decode, replicas: 2, tensor: 4, datacenter: siteD}";

/** The audit's over2.yaml: 6 prefill replicas (24 GPUs) pinned to siteP, 2 decode (8) to siteD, 32 GPUs. */
std::string over2_yaml() {
  const std::string y = t::replace_line(two_site_yaml(), kPrefill, "    - {role: prefill, replicas: 6, tensor: 4, datacenter: siteP}");
  return t::replace_line(y, "  count: 16", "  count: 32");
}

/** two_site_yaml with its two share lines replaced (an empty text drops the line). */
std::string with_shares(std::string y, const std::string& share0, const std::string& share1) {
  auto lines = t::lines_of(y);
  int seen = 0;
  std::vector<std::string> out;
  for (const auto& l : lines) {
    if (l == "    share: 0.5") {
      const std::string& s = seen++ == 0 ? share0 : share1;
      if (!s.empty()) out.push_back("    share: " + s);
    } else {
      out.push_back(l);
    }
  }
  REQUIRE(seen == 2);
  return t::join_lines(out);
}

}  // namespace

TEST_CASE("scenario::serving placement: the fixture is valid, and the shares stored are the chips' fractions",
          "[scenario][serving][placement]") {
  const auto s = t::load(two_site_yaml());
  REQUIRE(s.placement.size() == 2);
  CHECK(s.placement[0].share == 0.5);
  CHECK(s.placement[1].share == 0.5);
  SECTION("pinned pools with matching shares load, and the share is the true fraction") {
    const auto m = t::load(with_shares(over2_yaml(), "0.75", "0.25"));
    CHECK(m.placement[0].share == 0.75);  // 24 of the 32 chips
    CHECK(m.placement[1].share == 0.25);
  }
  SECTION("with every pool pinned and no share given, the shares are derived from the pools") {
    const auto m = t::load(with_shares(over2_yaml(), "", ""));
    CHECK(m.placement[0].share == Approx(0.75).epsilon(1e-12));
    CHECK(m.placement[1].share == Approx(0.25).epsilon(1e-12));
    // The resolved scenario (what the store keeps) carries them, so it loads again as it was.
    CHECK(m.resolved["placement"][0]["share"].get<double>() == Approx(0.75));
  }
}

TEST_CASE("scenario::serving placement: shares that disagree with the pinned pools are refused at the share",
          "[scenario][serving][placement]") {
  SECTION("over2: 24 chips pinned in siteP, share 0.5 of 32") {
    const std::string y = over2_yaml();
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement[0].share");
    CHECK(e.file() == "test.yaml");
    CHECK(e.line() == t::line_in(y, "share: 0.5"));
    CHECK(t::contains(e.message(), "share 0.5 of the 32 chips is 16 chips in 'siteP', but the serving pools put 24 there"));
    CHECK(t::contains(e.message(), "serving.pools[0] (prefill) is pinned there: 6 replicas x 4 chips = 24"));
    CHECK(t::contains(e.message(), "give share 0.75"));
    CHECK(t::contains(e.message(), "leave every placement[].share out"));
  }
  SECTION("over: 12 chips pinned in siteP, share 0.5 of 16 (the error names the pinned pool, not share x count)") {
    std::string y = t::replace_line(two_site_yaml(), kPrefill, "    - {role: prefill, replicas: 3, tensor: 4, datacenter: siteP}");
    y = t::replace_line(y, kDecode, "    - {role: decode, replicas: 1, tensor: 4, datacenter: siteD}");
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement[0].share");
    CHECK(e.line() == t::line_in(y, "share: 0.5"));
    CHECK(t::contains(e.message(), "is 8 chips in 'siteP', but the serving pools put 12 there"));
    CHECK(t::contains(e.message(), "serving.pools[0] (prefill) is pinned there: 3 replicas x 4 chips = 12"));
    CHECK_FALSE(t::contains(e.message(), "share 0.5 of cluster.count"));
  }
  SECTION("a pinned pool beside a spread one (halfpin): no shares can fit, pin both or neither") {
    std::string y = t::replace_line(two_site_yaml(), kPrefill, "    - {role: prefill, replicas: 4, tensor: 4, datacenter: siteP}");
    y = t::replace_line(y, kDecode, "    - {role: decode, replicas: 4, tensor: 4}");
    y = t::replace_line(y, "  count: 16", "  count: 32");
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement[0].share");
    CHECK(t::contains(e.message(), "put 24 there"));
    CHECK(t::contains(e.message(), "serving.pools[1] (decode) is spread by the shares: 2 of its 4 replicas x 4 chips = 8"));
    CHECK(t::contains(e.message(), "pin every pool to a datacenter"));
  }
}

TEST_CASE("scenario::serving placement: shares are checked to sum to 1 first, and say what they add up", "[scenario][serving][placement]") {
  SECTION("0.5 + 0.25") {
    const std::string y = with_shares(two_site_yaml(), "0.5", "0.25");
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement");
    CHECK(e.line() == t::line_in(y, "- datacenter: {name: siteP"));
    CHECK(t::contains(e.message(), "shares sum to 0.75 but must sum to 1 (placement[0].share 0.5 + placement[1].share 0.25)"));
  }
  SECTION("a share left out beside a given one") {
    const std::string y = with_shares(two_site_yaml(), "0.5", "");
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement");
    CHECK(t::contains(e.message(), "placement[1] gives no share: 1 by default"));
  }
}

TEST_CASE("scenario::serving placement: a datacenter that no pool reaches is refused with the pools' datacenters",
          "[scenario][serving][placement]") {
  SECTION("both pools pinned to siteP (bothP)") {
    const std::string y = t::replace_line(two_site_yaml(), kDecode, "    - {role: decode, replicas: 2, tensor: 4, datacenter: siteP}");
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement[1]");
    CHECK(e.file() == "test.yaml");
    CHECK(e.line() == t::line_in(y, "name: siteD"));
    CHECK(t::contains(e.message(), "datacenter 'siteD' gets no chips: serving.pools[0] (prefill) is pinned to 'siteP', "
                                   "serving.pools[1] (decode) is pinned to 'siteP'"));
    CHECK(t::contains(e.message(), "pin a pool to it (serving.pools[].datacenter: siteD) or remove it from `placement`"));
  }
  SECTION("the same with the shares left out: none can be derived for siteD") {
    const std::string y =
        with_shares(t::replace_line(two_site_yaml(), kDecode, "    - {role: decode, replicas: 2, tensor: 4, datacenter: siteP}"), "", "");
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement[1]");
    CHECK(e.line() == t::line_in(y, "name: siteD"));
    CHECK(t::contains(e.message(), "no pool is pinned to 'siteD'"));
  }
}

TEST_CASE("scenario::serving placement: a datacenter's GPUs must fill whole nodes, and the error names the pool that puts them there",
          "[scenario][serving][placement]") {
  SECTION("a pinned pool of 12 GPUs (over.yaml with its shares corrected)") {
    std::string y = t::replace_line(two_site_yaml(), kPrefill, "    - {role: prefill, replicas: 3, tensor: 4, datacenter: siteP}");
    y = t::replace_line(y, kDecode, "    - {role: decode, replicas: 1, tensor: 4, datacenter: siteD}");
    y = with_shares(y, "0.75", "0.25");
    const auto e = t::load_error(y);
    CHECK(e.key() == "serving.pools[0].datacenter");
    CHECK(e.file() == "test.yaml");
    CHECK(e.line() == t::line_in(y, "role: prefill"));
    CHECK(t::contains(e.message(), "datacenter 'siteP' (placement[0]) gets 12 GPUs (serving.pools[0] (prefill) is pinned there: "
                                   "3 replicas x 4 chips = 12), not whole nodes of 8 GPUs (cluster.topology.gpus_per_node)"));
  }
  SECTION("the same with the shares derived") {
    std::string y = t::replace_line(two_site_yaml(), kPrefill, "    - {role: prefill, replicas: 3, tensor: 4, datacenter: siteP}");
    y = t::replace_line(y, kDecode, "    - {role: decode, replicas: 1, tensor: 4, datacenter: siteD}");
    const auto e = t::load_error(with_shares(y, "", ""));
    CHECK(e.key() == "serving.pools[0].datacenter");
    CHECK(t::contains(e.message(), "gets 12 GPUs"));
  }
  SECTION("a spread pool: 3 of 4 replicas by share 0.75 (uneq.yaml on 16 GPUs)") {
    std::string y = t::replace_line(two_site_yaml(), kPrefill, "    - {replicas: 4, tensor: 4}");
    y = t::remove_line(y, kDecode);
    y = with_shares(y, "0.75", "0.25");
    const auto e = t::load_error(y);
    CHECK(e.key() == "placement[0].share");
    CHECK(e.line() == t::line_in(y, "share: 0.75"));
    CHECK(e.column() > 1);
    CHECK(t::contains(e.message(), "datacenter 'siteP' (placement[0]) gets 12 GPUs (serving.pools[0] (colocated) is spread by "
                                   "the shares: 3 of its 4 replicas x 4 chips = 12 (share 0.75)), not whole nodes of 8"));
  }
}
