//! The `snapflow` command: run a scenario on the embedded simulated cluster and print its
//! report.

use clap::{Parser, Subcommand};
use snapflow::scenario::{Expectation, Scenario};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "snapflow",
    about = "Flink's checkpointing semantics under deterministic simulation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (with its faults, and failure-free as the oracle) and check it.
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        /// The seed; the scenario's own `seed` when absent.
        #[arg(long)]
        seed: Option<u64>,
        /// Also print the traces of both runs (with faults, and failure-free).
        #[arg(long)]
        trace: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { file, seed, trace } => run(&file, seed, trace),
    }
}

fn run(file: &std::path::Path, seed: Option<u64>, trace: bool) -> ExitCode {
    let scenario = match Scenario::load(file) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let seed = seed.unwrap_or(scenario.seed);
    let run = snapflow::sim::run_scenario(&scenario, seed, &file.display().to_string());
    if trace {
        println!("--- trace of the run with faults");
        run.faulty.trace.iter().for_each(|line| println!("{line}"));
        println!("--- trace of the failure-free run");
        run.oracle.trace.iter().for_each(|line| println!("{line}"));
    }
    print!("{}", run.report);
    let expected = match scenario.expect {
        Expectation::Pass => run.verdict.passed(),
        Expectation::Fail => !run.verdict.passed(),
    };
    if !expected {
        eprintln!(
            "unexpected verdict: the scenario expects {:?}",
            scenario.expect
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
