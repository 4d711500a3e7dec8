// report.hpp — what `flashattn bench` and `flashattn io` write under --out: the machine's
// description, PNG plots drawn by gnuplot, and Markdown tables.
#pragma once

#include <fstream>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace flashattn::cli {

// CPU model, flags that matter here, cores, caches, memory, OpenBLAS core: Markdown lines.
std::string machine_description();

// "" when OpenBLAS's kernel uses vectors as wide as the CPU's widest, else a warning that
// says which core ran (and OPENBLAS_CORETYPE when set). The pure form takes the core name,
// the CPU's flags and the variable's value (null when unset), for the tests.
std::string blas_core_warning();
std::string blas_core_warning(const std::string& core, const std::string& cpu_flags, const char* coretype_env);

struct Series {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (x, y); y <= 0 is left out on log axes
};

struct Plot {
  std::string title, xlabel, ylabel;
  bool logx = true, logy = true;
  std::vector<Series> series;
};

// Writes DIR/NAME.gp (the data inline, so it can be re-run by hand) and renders
// DIR/NAME.png with gnuplot. Returns "" on success, else why there is no PNG.
std::string draw(const std::string& dir, const std::string& name, const Plot& plot);

// A Markdown table; every row has header.size() cells.
std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// printf-style formatting into a std::string.
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The stream --json names: stdout for "-", else `file` opened on the path (throws
// std::runtime_error naming it if it cannot be written); null for "".
std::ostream* open_json(const std::string& path, std::ofstream& file);

// Creates DIR (and its parents); throws std::runtime_error naming it on failure.
void make_directory(const std::string& dir);

}  // namespace flashattn::cli
