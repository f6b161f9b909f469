// gnuplot driver for sweep plots (see plot.hpp).
#include "plot.hpp"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include "masep/plan/output_file.hpp"

namespace masep::tools {
namespace {

namespace fs = std::filesystem;

std::string axis_label(const std::string& col) {
  static const std::map<std::string, std::string> kNames = {
      {"tpot_mean_ms", "TPOT mean (ms)"},
      {"tpot_p50_ms", "TPOT p50 (ms)"},
      {"tpot_p99_ms", "TPOT p99 (ms)"},
      {"tokens_per_s", "tokens/s"},
      {"tokens_per_s_per_gpu", "tokens/s per GPU"},
      {"scaling_efficiency", "scaling efficiency (TPS/GPU vs smallest)"},
      {"mean_utilisation", "mean GPU utilisation"},
      {"ratio", "attention : MoE GPUs"},
      {"gpus", "GPUs"},
      {"batch", "batch (sequences)"},
      {"exposed_comm_ms", "exposed communication (ms, summed)"},
      {"attention_idle_ms", "attention-side idle (ms, summed)"},
      {"moe_idle_ms", "MoE-side idle (ms, summed)"},
  };
  auto it = kNames.find(col);
  return it == kNames.end() ? col : it->second;
}

std::string gp_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool number(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end && *end == '\0' && std::isfinite(*v);
}

int run_gnuplot(const std::string& gnuplot, const std::string& dir, const std::string& script) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (::chdir(dir.c_str()) != 0) ::_exit(126);
    ::execl(gnuplot.c_str(), gnuplot.c_str(), script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

std::string find_gnuplot() {
  if (const char* env = std::getenv("MASEP_GNUPLOT")) {
    return ::access(env, X_OK) == 0 ? std::string(env) : std::string();
  }
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    const std::string dir = p.substr(start, end - start);
    if (!dir.empty()) {
      const std::string cand = dir + "/gnuplot";
      if (::access(cand.c_str(), X_OK) == 0) return cand;
    }
    start = end + 1;
  }
  return {};
}

std::vector<std::string> make_plots(const std::string& dir, const Sweep& sweep,
                                    const std::vector<std::vector<std::string>>& table,
                                    std::string* note) {
  std::vector<std::string> images;
  if (sweep.plots.empty() || table.empty()) return images;
  const auto& header = table.front();
  auto col = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) throw std::runtime_error(fmt::format("no column '{}'", name));
    return static_cast<size_t>(it - header.begin());
  };
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty() && note) {
    *note = "gnuplot not found (install gnuplot-nox): plots skipped, data and scripts written";
  }
  const size_t status_col = col("status");

  for (const auto& pl : sweep.plots) {
    const size_t xc = col(pl.x);
    std::vector<size_t> yc;
    for (const auto& y : pl.y) yc.push_back(col(y));
    const bool has_series = !pl.series.empty();
    const size_t sc = has_series ? col(pl.series) : 0;

    // Series in first-seen order; points sorted by x within a series.
    std::vector<std::string> series;
    std::map<std::string, std::vector<std::vector<double>>> data;
    for (size_t r = 1; r < table.size(); ++r) {
      const auto& row = table[r];
      if (row[status_col] != "ok") continue;
      std::vector<double> v(1 + yc.size(), NAN);
      if (!number(row[xc], &v[0])) continue;
      bool any = false;
      for (size_t j = 0; j < yc.size(); ++j) any |= number(row[yc[j]], &v[1 + j]);
      if (!any) continue;
      const std::string key = has_series ? row[sc] : std::string();
      if (!data.count(key)) series.push_back(key);
      data[key].push_back(std::move(v));
    }

    std::string dat;
    for (const auto& s : series) {
      auto& pts = data[s];
      std::stable_sort(pts.begin(), pts.end(),
                       [](const auto& a, const auto& b) { return a[0] < b[0]; });
      dat += fmt::format("# {} = {}\n", has_series ? pl.series : "all", s);
      for (const auto& v : pts) {
        for (size_t j = 0; j < v.size(); ++j) {
          dat += j ? " " : "";
          dat += std::isfinite(v[j]) ? fmt::format("{:.6g}", v[j]) : "?";
        }
        dat += "\n";
      }
      dat += "\n\n";
    }
    const std::string stem = pl.name;
    plan::write_output_file(plan::path_inside(dir, stem + ".dat", "plot name").string(),
                            "plot data", dat);

    std::string plot = "plot ";
    bool first = true;
    for (size_t i = 0; i < series.size(); ++i) {
      for (size_t j = 0; j < yc.size(); ++j) {
        std::string title = axis_label(pl.y[j]);
        if (has_series) {
          title = pl.series == "label" ? fmt::format("{}: {}", series[i], title)
                                       : fmt::format("{} = {}: {}", pl.series, series[i], title);
        }
        plot += fmt::format(
            "{}'{}.dat' index {} using 1:{} with linespoints lw 2 pt {} dt {} "
            "lc {} title {} axes x1y{}",
            first ? "" : ", \\\n     ", stem, i, j + 2, 7 + static_cast<int>(j), j + 1, i + 1,
            gp_quote(title), j + 1);
        first = false;
      }
    }
    std::string gp = fmt::format(
        "# Generated by `masep sweep` from {}; rerun with: gnuplot {}.gp\n"
        "set encoding utf8\nset datafile missing \"?\"\nset termoption noenhanced\n"
        "set title {}\nset xlabel {}\nset ylabel {}\nset grid\nset key below\n",
        sweep.origin, stem, gp_quote(pl.title.empty() ? stem : pl.title),
        gp_quote(axis_label(pl.x)), gp_quote(axis_label(pl.y[0])));
    if (yc.size() > 1) {
      gp += fmt::format("set y2label {}\nset y2tics\nset ytics nomirror\n",
                        gp_quote(axis_label(pl.y[1])));
    }
    if (pl.logx) gp += "set logscale x 2\n";
    gp += "set yrange [0:*]\n";
    if (yc.size() > 1) gp += "set y2range [0:*]\n";
    gp += fmt::format(
        "set terminal pngcairo size 1000,640 font \"Sans,11\" noenhanced\nset output '{0}.png'\n"
        "{1}\nset terminal svg size 1000,640 dynamic font \"Sans,11\" noenhanced\n"
        "set output '{0}.svg'\nreplot\nunset output\n",
        stem, plot);
    plan::write_output_file(plan::path_inside(dir, stem + ".gp", "plot name").string(),
                            "plot script", gp);
    if (gnuplot.empty() || series.empty()) continue;
    const int rc = run_gnuplot(gnuplot, dir, stem + ".gp");
    if (rc != 0) {
      throw std::runtime_error(fmt::format("gnuplot failed (exit {}) on {}/{}.gp", rc, dir, stem));
    }
    images.push_back((fs::path(dir) / (stem + ".png")).string());
    images.push_back((fs::path(dir) / (stem + ".svg")).string());
  }
  return images;
}

std::vector<std::string> make_heatmap(const std::string& dir, const std::string& name,
                                      const std::string& title, const std::string& xlabel,
                                      const std::string& ylabel,
                                      const std::vector<std::string>& xlabels,
                                      const std::vector<std::string>& ylabels,
                                      const std::vector<std::vector<double>>& values,
                                      double centre, std::string* note) {
  std::vector<std::string> images;
  if (values.empty() || xlabels.empty()) return images;
  // One line per cell: x index, y index, value ("?" = missing).
  std::string dat = "# x y value\n";
  double lo = centre, hi = centre;
  for (size_t r = 0; r < values.size(); ++r) {
    for (size_t c = 0; c < values[r].size(); ++c) {
      const double v = values[r][c];
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        dat += fmt::format("{} {} {:.6g}\n", c, r, v);
      } else {
        dat += fmt::format("{} {} ?\n", c, r);
      }
    }
    dat += "\n";
  }
  const double span = std::max({centre - lo, hi - centre, 1e-9});
  auto tics = [](const std::vector<std::string>& labels) {
    std::string t = "(";
    for (size_t i = 0; i < labels.size(); ++i) {
      t += fmt::format("{}{} {}", i ? ", " : "", gp_quote(labels[i]), i);
    }
    return t + ")";
  };
  const std::string gp = fmt::format(
      "# Generated by masep; rerun with: gnuplot {0}.gp\n"
      "set encoding utf8\nset datafile missing \"?\"\nset termoption noenhanced\n"
      "set title {1}\nset xlabel {2}\nset ylabel {3}\nset xtics {4}\nset ytics {5}\n"
      "set xrange [-0.5:{6}]\nset yrange [-0.5:{7}]\nset cbrange [{8}:{9}]\n"
      "set palette defined (0 '#c0392b', 1 '#ffffff', 2 '#2471a3')\nunset key\n"
      "set terminal pngcairo size 900,600 font \"Sans,11\" noenhanced\nset output '{0}.png'\n"
      "plot '{0}.dat' using 1:2:3 with image, '' using 1:2:(sprintf('%.2f', $3)) with labels\n"
      "set terminal svg size 900,600 dynamic font \"Sans,11\" noenhanced\n"
      "set output '{0}.svg'\nreplot\nunset output\n",
      name, gp_quote(title), gp_quote(xlabel), gp_quote(ylabel), tics(xlabels), tics(ylabels),
      xlabels.size() - 0.5, values.size() - 0.5, centre - span, centre + span);
  plan::write_output_file(plan::path_inside(dir, name + ".dat", "plot name").string(),
                          "plot data", dat);
  plan::write_output_file(plan::path_inside(dir, name + ".gp", "plot name").string(),
                          "plot script", gp);
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty()) {
    if (note) *note = "gnuplot not found (install gnuplot-nox): plots skipped, data and scripts written";
    return images;
  }
  const int rc = run_gnuplot(gnuplot, dir, name + ".gp");
  if (rc != 0) {
    throw std::runtime_error(fmt::format("gnuplot failed (exit {}) on {}/{}.gp", rc, dir, name));
  }
  images.push_back((fs::path(dir) / (name + ".png")).string());
  images.push_back((fs::path(dir) / (name + ".svg")).string());
  return images;
}

}  // namespace masep::tools
