// Plots of a sweep's results through the `gnuplot` binary (Debian: gnuplot-nox). For each
// plot we write DIR/<name>.dat (one data block per series) and DIR/<name>.gp (a script a
// person can edit and rerun), then run gnuplot to draw DIR/<name>.png and DIR/<name>.svg.
#pragma once

#include <string>
#include <vector>

#include "sweep.hpp"

namespace masep::tools {

/// Path of the gnuplot executable found on PATH, or empty.
std::string find_gnuplot();

/// Writes data, script and images for every plot of `sweep` into `dir` from the results
/// table (results_table()). Returns the image paths written. When gnuplot is missing, it
/// writes the data and scripts only and sets `*note` to say so; when gnuplot fails, it
/// throws std::runtime_error naming the script.
std::vector<std::string> make_plots(const std::string& dir, const Sweep& sweep,
                                    const std::vector<std::vector<std::string>>& table,
                                    std::string* note);

/// A heat map: `values[r][c]` (NaN = no value, drawn blank) with row labels (y, bottom to top
/// in order) and column labels (x), each cell printed with its value; colours centred on
/// `centre` (below: red, above: blue). Writes DIR/<name>.dat and .gp and, when gnuplot is
/// found, .png and .svg (returned); without gnuplot sets `*note`. Throws std::runtime_error
/// when gnuplot fails.
std::vector<std::string> make_heatmap(const std::string& dir, const std::string& name,
                                      const std::string& title, const std::string& xlabel,
                                      const std::string& ylabel,
                                      const std::vector<std::string>& xlabels,
                                      const std::vector<std::string>& ylabels,
                                      const std::vector<std::vector<double>>& values,
                                      double centre, std::string* note);

}  // namespace masep::tools
