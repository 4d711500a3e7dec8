// timing.cpp — see timing.hpp.
#include "timing.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>

namespace flashattn::cli {

namespace {

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// "32768K", "32M", "512" (bytes) as sysfs writes cache sizes.
std::int64_t parse_size(const std::string& text) {
  if (text.empty()) return 0;
  std::int64_t value = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) value = value * 10 + (text[i] - '0');
  if (i < text.size() && text[i] == 'K') value <<= 10;
  if (i < text.size() && text[i] == 'M') value <<= 20;
  if (i < text.size() && text[i] == 'G') value <<= 30;
  return value;
}

}  // namespace

std::int64_t last_level_cache_bytes() {
  // The highest cache level cpu0 has, then every CPU's instance of it, each distinct
  // (shared_cpu_list) counted once.
  int top_index = -1, top_level = 0;
  for (int index = 0; index < 16; ++index) {
    const std::string level = read_line("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/level");
    if (level.empty()) continue;
    if (std::stoi(level) > top_level) top_level = std::stoi(level), top_index = index;
  }
  if (top_index < 0) return 0;
  const long cpus = sysconf(_SC_NPROCESSORS_CONF);
  std::set<std::string> seen;
  std::int64_t total = 0;
  for (long cpu = 0; cpu < std::max(1L, cpus); ++cpu) {
    const std::string dir =
        "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cache/index" + std::to_string(top_index) + "/";
    const std::string shared = read_line(dir + "shared_cpu_list");
    if (!seen.insert(shared.empty() ? std::to_string(cpu) : shared).second) continue;
    total += parse_size(read_line(dir + "size"));
  }
  return total;
}

CacheFlusher::CacheFlusher()
    : bytes_(std::max<std::int64_t>(std::int64_t{64} << 20, 2 * last_level_cache_bytes())),
      buffer_(new char[bytes_]) {}

}  // namespace flashattn::cli
