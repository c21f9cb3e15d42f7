// SPDX-License-Identifier: Apache-2.0
#include "moesim/reports/report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "model.hpp"
#include "moesim/core/error.hpp"
#include "moesim/reports/markup.hpp"

namespace moesim::reports {

namespace fs = std::filesystem;

Format parse_format(const std::string& text) {
  if (text == "html") return Format::html;
  if (text == "md" || text == "markdown") return Format::markdown;
  if (text == "csv") return Format::csv;
  throw Error(fmt::format("unknown report format '{}' (allowed: html, md, markdown, csv)", text));
}

std::string extension(Format f) {
  switch (f) {
    case Format::html: return "html";
    case Format::markdown: return "md";
    case Format::csv: return "csv";
  }
  return "txt";
}

ReportTarget parse_target(const std::string& text) {
  ReportTarget t;
  std::string digits = text;
  if (text.rfind("comparison:", 0) == 0) {
    t.kind = ReportTarget::Kind::comparison;
    digits = text.substr(11);
  } else if (text.rfind("sweep:", 0) == 0 || text.rfind("sweep-", 0) == 0) {
    t.kind = ReportTarget::Kind::sweep;
    digits = text.substr(6);
  } else if (!text.empty() && (text[0] == 'c' || text[0] == 'C')) {
    t.kind = ReportTarget::Kind::comparison;
    digits = text.substr(1);
  } else if (!text.empty() && (text[0] == 's' || text[0] == 'S')) {
    t.kind = ReportTarget::Kind::sweep;
    digits = text.substr(1);
  }
  const bool numeric = !digits.empty() && digits.size() <= 18 &&
                       std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!numeric || std::stoll(digits) <= 0)
    throw Error(fmt::format("'{}' names no run, comparison or sweep (allowed: a run id N, cN / comparison:N for a comparison, sN / sweep:N / "
                            "sweep-N for a sweep; N a positive integer)",
                            text));
  t.id = std::stoll(digits);
  return t;
}

namespace {

/** The runs of comparison `c`, by id; throws moesim::Error when they mix training and serving runs. */
std::vector<store::RunRecord> comparison_runs(const store::Store& db, const store::Comparison& c) {
  std::vector<store::RunRecord> runs;
  for (std::int64_t id : c.run_ids) runs.push_back(db.get_run(id));
  std::sort(runs.begin(), runs.end(), [](const store::RunRecord& a, const store::RunRecord& b) { return a.id < b.id; });
  detail::runs_kind(runs, fmt::format("comparison {} in {}", c.id, db.path()));
  return runs;
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& content) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create report directory {}: {}", dir, ec.message()));
  if (!fs::is_directory(dir, ec)) throw Error(fmt::format("cannot write reports into {}: not a directory", dir));
  const fs::path path = fs::path(dir) / name;
  const fs::path tmp = fs::path(dir) / fmt::format(".{}.{}.tmp", name, static_cast<long>(getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write report {}: {}", path.string(), std::strerror(errno)));
    out << content;
    out.close();
    if (!out) {
      fs::remove(tmp, ec);
      throw Error(fmt::format("cannot write report {}: write failed", path.string()));
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw Error(fmt::format("cannot write report {}: {}", path.string(), ec.message()));
  }
  return path.string();
}

}  // namespace

std::string render_run_report(const store::Store& db, std::int64_t run_id, Format f) {
  const store::RunRecord r = db.get_run(run_id);
  switch (f) {
    case Format::html: return detail::html_run(r, db.path());
    case Format::markdown: return detail::markdown_run(r, db.path());
    case Format::csv: return detail::csv_report({r});
  }
  return "";
}

std::string render_comparison_report(const store::Store& db, std::int64_t comparison_id, Format f) {
  const store::Comparison c = db.get_comparison(comparison_id);
  if (c.run_ids.empty())
    throw Error(fmt::format("comparison {} in {} has no runs: nothing to report", comparison_id, db.path()));
  const std::vector<store::RunRecord> runs = comparison_runs(db, c);
  const std::vector<ComparisonRow> rows = detail::rows_from_runs(runs);
  switch (f) {
    case Format::html: return detail::html_comparison(c, runs, rows, db.path());
    case Format::markdown: return detail::markdown_comparison(c, runs, rows, db.path());
    case Format::csv: return detail::csv_report(runs);
  }
  return "";
}

std::string write_run_report(const store::Store& db, std::int64_t run_id, Format f, const std::string& out_dir) {
  const std::string content = render_run_report(db, run_id, f);
  return write_file(out_dir, fmt::format("run-{}.{}", run_id, extension(f)), content);
}

std::string write_comparison_report(const store::Store& db, std::int64_t comparison_id, Format f, const std::string& out_dir) {
  const std::string content = render_comparison_report(db, comparison_id, f);
  return write_file(out_dir, fmt::format("comparison-{}.{}", comparison_id, extension(f)), content);
}

std::string write_sweep_report(const store::Store& db, std::int64_t sweep_id, Format f, const std::string& out_dir) {
  const std::string content = render_sweep_report(db, sweep_id, f);
  return write_file(out_dir, fmt::format("sweep-{}.{}", sweep_id, extension(f)), content);
}

std::string write_report(const store::Store& db, const ReportTarget& target, Format f, const std::string& out_dir) {
  switch (target.kind) {
    case ReportTarget::Kind::run: return write_run_report(db, target.id, f, out_dir);
    case ReportTarget::Kind::comparison: return write_comparison_report(db, target.id, f, out_dir);
    case ReportTarget::Kind::sweep: return write_sweep_report(db, target.id, f, out_dir);
  }
  return "";
}

std::vector<ComparisonRow> comparison_rows(const store::Store& db, std::int64_t comparison_id) {
  const store::Comparison c = db.get_comparison(comparison_id);
  return detail::rows_from_runs(comparison_runs(db, c));
}

std::string comparison_grid_basis_note(const store::Store& db, std::int64_t comparison_id) {
  return detail::grid_basis_note(comparison_runs(db, db.get_comparison(comparison_id)));
}

std::vector<bool> pareto_front(const std::vector<std::pair<double, double>>& points) { return detail::pareto_flags(points); }

namespace {

std::size_t glyphs(const std::string& s) {
  std::size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

/** The cells of the ranking table, as text, header first. */
std::vector<std::vector<std::string>> ranking_cells(const std::vector<ComparisonRow>& rows) {
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> head = {"Rank", "Alternative", "Run", "Status"};
  const auto& columns = detail::ranking_columns_for(rows);
  for (const auto& c : columns) head.push_back(fmt::format("{} ({})", c.header, c.unit));
  head.push_back("Pareto");
  cells.push_back(head);
  for (const auto& r : rows) {
    std::vector<std::string> line = {r.rank > 0 ? std::to_string(r.rank) : "\xE2\x80\x93", r.label, std::to_string(r.run_id), r.status};
    for (const auto& c : columns) line.push_back(format_value(c.value(r), c.significant));
    line.push_back(r.rank == 0 ? "\xE2\x80\x93" : (r.pareto ? "yes" : "no"));
    cells.push_back(line);
  }
  return cells;
}

}  // namespace

std::string comparison_table_text(const std::vector<ComparisonRow>& rows) {
  const auto cells = ranking_cells(rows);
  std::vector<std::size_t> width(cells.front().size(), 0);
  for (const auto& line : cells)
    for (std::size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], glyphs(line[i]));
  std::string out;
  for (std::size_t k = 0; k < cells.size(); ++k) {
    std::string line;
    for (std::size_t i = 0; i < cells[k].size(); ++i) {
      const std::string& c = cells[k][i];
      const std::string pad(width[i] - glyphs(c), ' ');
      const bool left = i == 1 || i == 3;  // alternative and status read left-aligned, numbers right-aligned
      line += (i ? "  " : "") + (left ? c + pad : pad + c);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
    if (k == 0) {
      std::size_t total = 0;
      for (std::size_t i = 0; i < width.size(); ++i) total += width[i] + (i ? 2 : 0);
      out += std::string(total, '-') + "\n";
    }
  }
  if (rows.empty()) out += "(no runs)\n";
  return out;
}

std::string comparison_table_markdown(const std::vector<ComparisonRow>& rows) {
  const auto cells = ranking_cells(rows);
  std::string out;
  for (std::size_t k = 0; k < cells.size(); ++k) {
    out += "|";
    for (const auto& c : cells[k]) out += " " + markdown_escape(c) + " |";
    out += "\n";
    if (k == 0) {
      out += "|";
      for (std::size_t i = 0; i < cells[k].size(); ++i) out += (i == 1 || i == 3 || i + 1 == cells[k].size()) ? " --- |" : " ---: |";
      out += "\n";
    }
  }
  return out;
}

}  // namespace moesim::reports
