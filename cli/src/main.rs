//! The `cutover` binary with the built-in drivers.

fn main() -> std::process::ExitCode {
    cutover::main_with(cutover::Registry::builtin())
}
