// cli.hpp — subcommands of the flashattn program.
#pragma once

namespace flashattn::cli {

// `flashattn check`: every path against the reference on a sweep of awkward shapes.
int check_main(int argc, char** argv);

// `flashattn bench`: SGEMM rate, then each implementation and pass, timed.
int bench_main(int argc, char** argv);

// `flashattn io`: slow-memory traffic in the paper's model, beside measured figures.
int io_main(int argc, char** argv);

}  // namespace flashattn::cli
