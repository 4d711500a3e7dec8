// report.cpp — see report.hpp.
#include "report.hpp"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "internal.hpp"

namespace flashattn::cli {

std::string format(const char* fmt, ...) {
  char buf[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

std::ostream* open_json(const std::string& path, std::ofstream& file) {
  if (path.empty()) return nullptr;
  if (path == "-") return &std::cout;
  file.open(path);
  if (!file) throw std::runtime_error("--json: cannot write " + path);
  return &file;
}

void make_directory(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) throw std::runtime_error("--out: cannot create directory " + dir);
}

namespace {

// The first /proc/cpuinfo line starting with `key`, after its colon.
std::string cpuinfo(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string sysfs(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s.empty() ? "unknown" : s;
}

}  // namespace

std::string machine_description() {
  std::string flags;
  std::istringstream all(cpuinfo("flags"));
  for (std::string f; all >> f;) {
    for (const char* wanted : {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
                               "avx512_fp16", "amx_tile", "hypervisor"}) {
      if (f == wanted) flags += (flags.empty() ? "" : " ") + f;
    }
  }
  const long long ram = static_cast<long long>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  const std::string cache = "/sys/devices/system/cpu/cpu0/cache/index";
  std::ostringstream os;
  os << "- CPU: " << cpuinfo("model name") << " (vendor " << cpuinfo("vendor_id") << ", family "
     << cpuinfo("cpu family") << ", model " << cpuinfo("model") << ")\n"
     << "- Flags that matter here: " << (flags.empty() ? "none of AVX/AVX2/FMA/AVX-512" : flags) << "\n"
     << "- Cores online: " << sysconf(_SC_NPROCESSORS_ONLN) << "; OpenMP threads: " << omp_get_max_threads() << "\n"
     << "- Caches (per core, as the kernels read them): L1d " << (cache_sizes().l1d_bytes >> 10) << " KiB, L2 "
     << (cache_sizes().l2_bytes >> 10) << " KiB; L3 " << sysfs(cache + "3/size") << " (sysfs)\n"
     << "- Memory: " << format("%.1f", ram / 1073741824.0) << " GiB\n"
     << "- Flash kernels: " << to_string(default_isa()) << " build; OpenBLAS core " << openblas_get_corename()
     << (std::getenv("OPENBLAS_CORETYPE") ? format(" (OPENBLAS_CORETYPE=%s)", std::getenv("OPENBLAS_CORETYPE")) : "")
     << "\n";
  return os.str();
}

static int blas_core_vector_bits(const std::string& core) {
  std::string c;
  for (char ch : core) c += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* wide : {"skylakex", "cooperlake", "sapphirerapids", "zen4", "zen5"}) {
    if (c == wide) return 512;
  }
  for (const char* avx2 : {"haswell", "zen", "skylake", "excavator", "atomx"}) {
    if (c == avx2) return 256;
  }
  if (c == "sandybridge" || c == "bulldozer" || c == "piledriver" || c == "steamroller") return 256;
  return 128;
}

static int cpu_vector_bits(const std::string& flags) {
  std::istringstream all(flags);
  int bits = 128;
  for (std::string f; all >> f;) {
    if (f == "avx512f") bits = std::max(bits, 512);
    if (f == "avx2" || f == "avx") bits = std::max(bits, 256);
  }
  return bits;
}

std::string blas_core_warning(const std::string& core, const std::string& cpu_flags, const char* coretype_env) {
  const int blas = blas_core_vector_bits(core), cpu = cpu_vector_bits(cpu_flags);
  if (blas >= cpu) return "";
  return format("OpenBLAS runs its %s kernel (%d-bit vectors) on a CPU with %d-bit vectors%s: SGEMM runs below the "
                "machine's peak, so /sgemm ratios read high against what the hardware can do.",
                core.c_str(), blas, cpu,
                coretype_env ? format(" (OPENBLAS_CORETYPE=%s is set)", coretype_env).c_str() : "");
}

std::string blas_core_warning() {
  return blas_core_warning(openblas_get_corename(), cpuinfo("flags"), std::getenv("OPENBLAS_CORETYPE"));
}

std::string draw(const std::string& dir, const std::string& name, const Plot& plot) {
  const std::string script = dir + "/" + name + ".gp";
  {
    std::ofstream gp(script);
    if (!gp) return "cannot write " + script;
    gp << "set terminal pngcairo size 900,560 font 'sans,11'\n"
       << "set output '" << name << ".png'\n"
       << "set title '" << plot.title << "'\n"
       << "set xlabel '" << plot.xlabel << "'\nset ylabel '" << plot.ylabel << "'\n"
       << "set key left top\nset grid\n"
       << (plot.logx ? "set logscale x 2\n" : "") << (plot.logy ? "set logscale y\n" : "");
    for (std::size_t s = 0; s < plot.series.size(); ++s) {
      gp << "$d" << s << " << EOD\n";
      for (const auto& [x, y] : plot.series[s].points) {
        if (!plot.logy || y > 0) gp << x << " " << y << "\n";
      }
      gp << "EOD\n";
    }
    gp << "plot ";
    for (std::size_t s = 0; s < plot.series.size(); ++s) {
      gp << (s ? ", " : "") << "$d" << s << " using 1:2 with linespoints lw 2 title '" << plot.series[s].label << "'";
    }
    gp << "\n";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    return "gnuplot not found (scripts/setup.sh installs gnuplot-nox); the script is " + script;
  }
  const std::string command = "cd '" + dir + "' && gnuplot '" + name + ".gp' 2>/dev/null";
  if (std::system(command.c_str()) != 0) return "gnuplot failed on " + script;
  return "";
}

std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::ostringstream os;
  os << "|";
  for (const std::string& h : header) os << " " << h << " |";
  os << "\n|";
  for (std::size_t c = 0; c < header.size(); ++c) os << (c == 0 ? " :--- |" : " ---: |");
  os << "\n";
  for (const auto& row : rows) {
    os << "|";
    for (const std::string& cell : row) os << " " << cell << " |";
    os << "\n";
  }
  return os.str();
}

}  // namespace flashattn::cli
