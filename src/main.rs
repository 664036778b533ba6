//! The `snapflow` command: run a scenario on the embedded simulated cluster and print its
//! report (`snapflow::cli`, with the built-in jobs).

use snapflow::api::job_catalog::JobCatalog;
use std::process::ExitCode;

fn main() -> ExitCode {
    snapflow::cli::main_with(JobCatalog::built_in())
}
