// flashattn_main.cpp — the command-line program: `flashattn <subcommand> [flags]`.
#include <cstring>
#include <exception>
#include <iostream>

#include "cli.hpp"

namespace {

void print_usage(std::ostream& os) {
  os << "usage: flashattn <command> [flags]\n\n"
        "commands:\n"
        "  check    run every path (flash per ISA, standard) against the plain-loop reference\n"
        "           on a sweep of awkward shapes and print the errors\n"
        "  bench    time standard, flash and block-sparse attention against N (the paper's\n"
        "           Section 4.3): progress, tables, CSV/JSON, plots and a Markdown report\n"
        "  io       slow-memory traffic of each algorithm in the paper's model (Theorem 2,\n"
        "           Figure 2), fitted exponents, measured runtimes and measured traffic\n\n"
        "`flashattn <command> --help` describes the command's flags.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const char* command = argv[1];
  if (!std::strcmp(command, "--help") || !std::strcmp(command, "-h") || !std::strcmp(command, "help")) {
    print_usage(std::cout);
    return 0;
  }
  try {
    if (!std::strcmp(command, "check")) return flashattn::cli::check_main(argc - 1, argv + 1);
    if (!std::strcmp(command, "bench")) return flashattn::cli::bench_main(argc - 1, argv + 1);
    if (!std::strcmp(command, "io")) return flashattn::cli::io_main(argc - 1, argv + 1);
  } catch (const std::exception& e) {
    std::cerr << "flashattn " << command << ": " << e.what() << "\n";
    return 1;
  }
  std::cerr << "flashattn: unknown command '" << command << "'\n\n";
  print_usage(std::cerr);
  return 2;
}
