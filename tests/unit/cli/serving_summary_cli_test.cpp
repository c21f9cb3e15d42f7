// SPDX-License-Identifier: Apache-2.0
// The serving text summary (`moesim run` / `runs show` of a serving run): per-datacenter facility energy and gross
// and net CO2e, equal to what --json (and the reports' energy table) give; energy per token per datacenter only
// where a datacenter serves whole requests; SLO limits and short windows printed with their significant digits.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "moesim_test/cli_run.hpp"
#include "serving_cli_support.hpp"

using nlohmann::json;

namespace {

using moesim::testing::serving_cli::kModel;
using moesim::testing::serving_cli::Result;
using moesim::testing::serving_cli::run_cli;
using moesim::testing::serving_cli::write;

std::string scratch(const std::string& name) { return moesim::testing::scratch_dir("serving_summary", name); }

/** Two inline datacenters, one GPU each (nodes of 1 GPU), the WAN between them. */
const char* kTwoSites =
    "cluster:\n  accelerator: h100\n  count: 2\n  topology: {gpus_per_node: 1}\n"
    "placement:\n"
    "  - datacenter: {name: siteP, pue: 1.2, gross_kgco2e_per_kwh: 0.5, net_kgco2e_per_kwh: 0.1}\n"
    "    share: 0.5\n"
    "  - datacenter: {name: siteD, pue: 1.5, gross_kgco2e_per_kwh: 0.2}\n"
    "    share: 0.5\n"
    "wan: {bandwidth_gbps: 10, latency_ms: 5}\n";

const char* kWorkload = "  arrival: {type: constant, rate_per_s: 20}\n  prompt_length: {type: fixed, value: 200}\n"
                        "  output_length: {type: fixed, value: 20}\n  duration_s: 2\n  warmup_s: 0.5\n";

/** The summary line of datacenter `name` ("    siteP ... chips ..."); fails the test if there is none. */
std::string site_line(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.rfind("    " + name + " ", 0) == 0 && l.find(" chips ") != std::string::npos) return l;
  FAIL("no summary line for datacenter " << name << " in:\n" << text);
  return "";
}

struct SiteFigures {
  double facility_kwh = 0.0, gross_g = 0.0, net_g = 0.0;
};

/** The facility kWh and gross and net gCO2e a summary line prints. */
SiteFigures parse_site(const std::string& line) {
  static const std::regex re(R"(facility\s+(\S+) kWh\s+CO2e\s+(\S+) g gross\s+(\S+) g net)");
  std::smatch m;
  REQUIRE(std::regex_search(line, m, re));
  return {std::stod(m[1].str()), std::stod(m[2].str()), std::stod(m[3].str())};
}

/** The same four significant digits the summary prints. */
void check_same(double printed, double exact) {
  INFO("printed " << printed << " exact " << exact);
  CHECK(printed == Approx(exact).epsilon(6e-4));
}

}  // namespace

TEST_CASE("cli::serving summary: prefill and decode in different datacenters print each one's energy and CO2e, as --json",
          "[cli][serving][summary]") {
  const std::string dir = scratch("split_sites");
  const std::string db = dir + "/runs.db";
  const auto f = write(dir + "/s.yaml", std::string("name: split\n") + kModel + "serving:\n" + kWorkload +
                                            "  pools:\n    - {role: prefill, replicas: 1, datacenter: siteP}\n"
                                            "    - {role: decode, replicas: 1, datacenter: siteD}\n" + kTwoSites);
  const Result r = run_cli("run " + f + " --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const Result text = run_cli("runs show " + std::to_string(j.at("run_id").get<long long>()) + " --db " + db, dir);
  INFO(text.out);
  REQUIRE(text.status == 0);
  std::map<std::string, json> dcs;
  for (const json& d : j.at("datacenters")) dcs[d.at("name").get<std::string>()] = d;
  REQUIRE(dcs.size() == 2);
  double facility_sum = 0.0, gross_sum = 0.0;
  for (const auto& [name, d] : dcs) {
    const SiteFigures s = parse_site(site_line(text.out, name));
    check_same(s.facility_kwh, d.at("facility_energy_kwh").get<double>());
    check_same(s.gross_g, d.at("co2e_gross_kg").get<double>() * 1000.0);
    check_same(s.net_g, d.at("co2e_net_kg").get<double>() * 1000.0);
    facility_sum += d.at("facility_energy_kwh").get<double>();
    gross_sum += d.at("co2e_gross_kg").get<double>();
  }
  // The datacenters add up to the run (which the energy line prints).
  CHECK(facility_sum == Approx(j.at("facility_energy_kwh").get<double>()));
  CHECK(gross_sum == Approx(j.at("co2e_gross_kg").get<double>()));
  // The KV caches cross the WAN from siteP (the sender carries the WAN's per-bit energy, outside its PUE). siteP's
  // market-based figure applies its net intensity (0.1 kg/kWh) to its own energy only: the carrier's WAN joules take
  // the gross intensity (0.5), as no contract of the datacenter's covers them.
  const double wan_kwh = j.at("metrics").at("wan_energy_j").at("value").get<double>() / 3.6e6;
  REQUIRE(wan_kwh > 0.0);
  const double p_kwh = dcs["siteP"].at("facility_energy_kwh").get<double>();
  CHECK(dcs["siteP"].at("co2e_net_kg").get<double>() == Approx(0.1 * (p_kwh - wan_kwh) + 0.5 * wan_kwh).epsilon(1e-9));
  CHECK(dcs["siteP"].at("co2e_gross_kg").get<double>() == Approx(0.5 * p_kwh).epsilon(1e-9));
  // siteD has no net intensity: its net CO2e is its gross (the market-based figure falls back), as in --json.
  CHECK(dcs["siteD"].at("co2e_net_kg").get<double>() == Approx(dcs["siteD"].at("co2e_gross_kg").get<double>()));
  // Each datacenter is credited with the tokens its replicas generate; no per-token figure per datacenter, since a
  // prefill site's energy over first tokens only (or a decode site's without the prefill) is no cost of a token.
  const std::string p = site_line(text.out, "siteP"), d = site_line(text.out, "siteD");
  CHECK(p.find("output tokens (prefill: each request's first token)") != std::string::npos);
  CHECK(d.find("output tokens (decode: every token after the first)") != std::string::npos);
  CHECK(p.find("J/token") == std::string::npos);
  CHECK(d.find("J/token") == std::string::npos);
  CHECK(text.out.find("disaggregated pools over several datacenters") != std::string::npos);
  // The tokens printed are the ones --json gives per datacenter, and they add up to the run's.
  const double tp = dcs["siteP"].at("output_tokens").get<double>(), td = dcs["siteD"].at("output_tokens").get<double>();
  CHECK(p.find(" " + std::to_string(static_cast<long long>(tp)) + " output tokens") != std::string::npos);
  CHECK(d.find(" " + std::to_string(static_cast<long long>(td)) + " output tokens") != std::string::npos);
  CHECK(tp + td == Approx(j.at("metrics").at("output_tokens").at("value").get<double>()));
  CHECK(td > tp);
  // Nor anywhere else: --json gives null per datacenter (the run-level figure stands), and the Markdown report's
  // per-token table shows a dash and says why.
  for (const auto& [name, dc] : dcs) {
    INFO(name);
    CHECK(dc.at("energy_per_output_token_j").is_null());
    CHECK(dc.at("gco2e_gross_per_1000_tokens").is_null());
  }
  CHECK(j.at("energy_per_output_token_j").get<double>() > 0.0);
  const Result md = run_cli("report " + std::to_string(j.at("run_id").get<long long>()) + " --format md -o " + dir + " --db " + db, dir);
  INFO(md.err);
  REQUIRE(md.status == 0);
  std::ifstream in(dir + "/run-" + std::to_string(j.at("run_id").get<long long>()) + ".md");
  const std::string report((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(report.find("No per-datacenter figure per token where a request's prefill and decode can run in different datacenters") !=
        std::string::npos);
}

TEST_CASE("cli::serving summary: the energy line's terms add up to the facility energy, small figures keep their digits",
          "[cli][serving][summary]") {
  const std::string dir = scratch("energy_terms");
  // One GPU, PUE 1.5, a light load over 0.5 s: a few Wh, which fixed decimals printed as 0.000 kWh.
  const auto f = write(dir + "/s.yaml", std::string("name: terms\n") + kModel + "serving:\n" + kWorkload +
                                            "  pools:\n    - {replicas: 1}\n"
                                            "cluster:\n  accelerator: h100\n  count: 1\n  topology: {gpus_per_node: 1}\n"
                                            "placement:\n  - datacenter: {name: dcA, pue: 1.5, gross_kgco2e_per_kwh: 0.01}\n");
  const std::string sets = " --set energy.embodied=true";
  const Result r = run_cli("run " + f + sets + " --json --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const Result text = run_cli("run " + f + sets + " --no-store", dir);
  INFO(text.out);
  REQUIRE(text.status == 0);
  CHECK(text.out.rfind("moesim run (not stored): terms", 0) == 0);
  static const std::regex energy_re(R"(IT (\S+) kWh \+ network (\S+) kWh \(x PUE\) -> facility (\S+) kWh)");
  std::smatch m;
  REQUIRE(std::regex_search(text.out, m, energy_re));
  const double it = std::stod(m[1].str()), net = std::stod(m[2].str()), facility = std::stod(m[3].str());
  CHECK(it > 0.0);
  CHECK(net > 0.0);
  check_same(facility, j.at("facility_energy_kwh").get<double>());
  check_same(it, j.at("it_energy_kwh").get<double>());
  CHECK((it + net) * 1.5 == Approx(facility).epsilon(2e-3));  // one datacenter, no WAN
  // Grams per request and per 1000 tokens at 0.01 kg/kWh are well under 0.0001 g: printed with their digits.
  static const std::regex co2_re(R"((\S+) gCO2e per 1000 tokens gross, \S+ net\s+(\S+) g per request gross)");
  REQUIRE(std::regex_search(text.out, m, co2_re));
  check_same(std::stod(m[1].str()), j.at("gco2e_gross_per_1000_tokens").get<double>());
  check_same(std::stod(m[2].str()), j.at("gco2e_gross_per_request").get<double>());
  CHECK(std::stod(m[2].str()) > 0.0);
  // Embodied carbon, asked for, is in the summary as in --json.
  static const std::regex emb_re(R"(embodied\s+(\S+) gCO2e per 1000 tokens)");
  REQUIRE(std::regex_search(text.out, m, emb_re));
  check_same(std::stod(m[1].str()), j.at("embodied_gco2e_per_1000_tokens").get<double>());
  // A pinned chip power is said to be pinned.
  const Result pinned = run_cli("run " + f + " --set energy.average_chip_power_w=1000 --no-store", dir);
  CHECK(pinned.out.find("(1000 W/chip, pinned by energy.average_chip_power_w)") != std::string::npos);
}

TEST_CASE("cli::serving summary: colocated replicas in two datacenters keep a per-token figure, and an idle one says it has none",
          "[cli][serving][summary]") {
  const std::string dir = scratch("idle_site");
  // One request, two colocated replicas spread 1 + 1: round robin sends it to siteP's replica, siteD's idles.
  const auto f = write(dir + "/s.yaml", std::string("name: idle\n") + kModel +
                                            "serving:\n  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 200}\n"
                                            "  output_length: {type: fixed, value: 20}\n  requests: 1\n"
                                            "  pools:\n    - {replicas: 2}\n" + kTwoSites);
  const Result r = run_cli("run " + f + " --json --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const Result text = run_cli("run " + f + " --no-store", dir);
  INFO(text.out);
  REQUIRE(text.status == 0);
  std::map<std::string, json> dcs;
  for (const json& d : j.at("datacenters")) dcs[d.at("name").get<std::string>()] = d;
  REQUIRE(dcs["siteP"].at("output_tokens").get<double>() == 20.0);
  REQUIRE(dcs["siteD"].at("output_tokens").get<double>() == 0.0);
  const std::string p = site_line(text.out, "siteP"), d = site_line(text.out, "siteD");
  // siteP served the whole request: its J/token is its facility energy over its tokens, as --json has it.
  static const std::regex per_token_re(R"((\S+) J/token)");
  std::smatch pm;
  REQUIRE(std::regex_search(p, pm, per_token_re));
  check_same(std::stod(pm[1].str()), dcs["siteP"].at("energy_per_output_token_j").get<double>());
  CHECK(p.find("(20 output tokens)") != std::string::npos);
  // siteD's idle chips still draw energy: printed, not hidden behind a "–" ratio.
  CHECK(d.find("no output token generated here") != std::string::npos);
  CHECK(d.find("J/token") == std::string::npos);
  CHECK(dcs["siteD"].at("facility_energy_kwh").get<double>() > 0.0);
  check_same(parse_site(d).facility_kwh, dcs["siteD"].at("facility_energy_kwh").get<double>());
  check_same(parse_site(d).gross_g, dcs["siteD"].at("co2e_gross_kg").get<double>() * 1000.0);
  CHECK(text.out.find("disaggregated pools over several datacenters") == std::string::npos);
}

TEST_CASE("cli::serving summary: SLO limits under 1 ms and windows under 1 s keep their significant digits",
          "[cli][serving][summary]") {
  const std::string dir = scratch("precision");
  const auto f = write(dir + "/s.yaml", std::string("name: precision\n") + kModel +
                                            "serving:\n  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 100}\n"
                                            "  output_length: {type: fixed, value: 5}\n  requests: 2\n  pools:\n    - {replicas: 1}\n"
                                            "cluster:\n  accelerator: h100\n  count: 1\n  topology: {gpus_per_node: 1}\n"
                                            "placement:\n  - datacenter: gcp_us_central1_2023\n");
  const std::string sets = " --set serving.slo.ttft_ms=0.5 --set serving.slo.tpot_ms=0.2";
  const Result r = run_cli("run " + f + sets + " --json --no-store", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const double window = j.at("window_s").get<double>();
  REQUIRE(window > 0.0);
  REQUIRE(window < 0.05);  // two short offline requests: a few ms
  const Result text = run_cli("run " + f + sets + " --no-store", dir);
  INFO(text.out);
  REQUIRE(text.status == 0);
  CHECK(text.out.find("within TTFT 0.5 ms and TPOT 0.2 ms") != std::string::npos);
  CHECK(text.out.find("TTFT 0 ms") == std::string::npos);
  CHECK(text.out.find("over 0.0 s") == std::string::npos);
  static const std::regex re(R"(measured over (\S+) s)");
  std::smatch m;
  REQUIRE(std::regex_search(text.out, m, re));
  CHECK(std::stod(m[1].str()) == Approx(window).epsilon(5e-3));  // 3 significant digits
  // Whole-millisecond limits and windows over 1 s read as before.
  const Result plain = run_cli("run " + f + " --no-store", dir);
  CHECK(plain.out.find("within TTFT 2000 ms and TPOT 200 ms") != std::string::npos);
}
