//! The `snapflow` command line (`snapflow run`, `snapflow sweep`), over a catalog of jobs
//! scenario files can name: the built-in ones for the `snapflow` binary; a user's crate adds
//! its own and calls `main_with` from a binary or example of its own.

use crate::api::job_catalog::JobCatalog;
use crate::scenario::Scenario;
use crate::sim::sweep::{parse_seed, seed_range, SeedOutcome, Shard};
use crate::sim::{Runs, Stage};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
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
        #[arg(long, allow_hyphen_values = true, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Also print the traces of both runs (with faults, and failure-free).
        #[arg(long)]
        trace: bool,
        /// Once the plan's `cancel-job` cancelled the job, submit it again from this retained
        /// checkpoint (`chk-N`, `<dir>/chk-N` or `<dir>/chk-N/_metadata`, as `flink run -s`);
        /// overrides `execution.state-recovery.path`.
        #[arg(long)]
        restore: Option<String>,
        /// Threads for the two runs: 1 runs them one after the other, 2 (the default on a
        /// machine with two cores or more) side by side. The output is the same either way.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Run a scenario under many seeds (the same fault plan, different schedules) and list
    /// the seeds whose verdict is not the one the scenario expects.
    Sweep {
        /// The scenario file (TOML).
        file: PathBuf,
        /// How many seeds (at least 1).
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = parse_seed)]
        from: u64,
        /// Seeds run at once, each on a thread of its own (default: every core). The outcomes
        /// and their order are the same for any number.
        #[arg(long)]
        jobs: Option<usize>,
        /// Only part K of N of the range (1 <= K <= N), so N machines or CI jobs share it.
        #[arg(long, value_parser = Shard::parse)]
        shard: Option<Shard>,
    },
}

/// Parses the command line and runs it, with `catalog`'s jobs nameable in scenario files.
pub fn main_with(catalog: JobCatalog) -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            seed,
            trace,
            restore,
            jobs,
        } => {
            let runs = match jobs.unwrap_or_else(cores) {
                0 | 1 => Runs::Serial,
                _ => Runs::Concurrent,
            };
            run(&catalog, &file, seed, trace, restore.as_deref(), runs)
        }
        Command::Sweep {
            file,
            seeds,
            from,
            jobs,
            shard,
        } => match seed_range(from, seeds) {
            Ok(seeds) => {
                let jobs = jobs.unwrap_or_else(cores);
                sweep(&catalog, &file, seeds, shard.unwrap_or(Shard::ALL), jobs)
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
    }
}

fn load(catalog: &JobCatalog, file: &std::path::Path) -> Option<Scenario> {
    match Scenario::load_with_jobs(file, catalog) {
        Ok(scenario) if scenario.job_name == crate::scenario::OWN_JOB => {
            eprintln!(
                "error: {}: job.name = \"own\": the scenario runs a job of your own; check it from your crate's tests with crate::check(job, &scenario, seeds)",
                file.display()
            );
            None
        }
        Ok(scenario) => Some(scenario),
        Err(error) => {
            eprintln!("error: {error}");
            None
        }
    }
}

fn met(scenario: &Scenario, passed: bool) -> bool {
    scenario.expect.met(passed)
}

/// Every core of this machine.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn sweep(
    catalog: &JobCatalog,
    file: &std::path::Path,
    seeds: std::ops::RangeInclusive<u64>,
    shard: Shard,
    jobs: usize,
) -> ExitCode {
    let Some(scenario) = load(catalog, file) else {
        return ExitCode::from(2);
    };
    let source = file.display().to_string();
    let total = (seeds.end() - seeds.start()).saturating_add(1);
    let total = total / shard.count + u64::from(total % shard.count > shard.index);
    let mut missed = Vec::new();
    let mut count: u64 = 0;
    // On a terminal a progress bar on stderr; otherwise the plain seed lines alone. Wall-clock
    // time is the harness's, on stderr: stdout stays a pure function of the scenario and seeds.
    let bar = std::io::stderr().is_terminal().then(|| progress_bar(total));
    let started = std::time::Instant::now();
    crate::sim::sweep::sweep(&scenario, seeds, shard, jobs, |outcome| {
        count += 1;
        let line = seed_line(&outcome);
        if !outcome.met {
            let first = outcome
                .first_failure
                .unwrap_or_else(|| "the checks passed".to_string());
            let seed = outcome.seed;
            missed.push(format!(
                "seed {seed}: {first}\n  replay: {} run {source} --seed {seed}",
                replay_command()
            ));
        }
        match &bar {
            Some(bar) => {
                bar.suspend(|| println!("{line}"));
                bar.set_message(format!("{} failed", missed.len()));
                bar.inc(1);
            }
            None => println!("{line}"),
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    for line in &missed {
        println!("{line}");
    }
    println!(
        "sweep: {} passed, {} failed",
        count - missed.len() as u64,
        missed.len()
    );
    eprintln!(
        "wall: {count} seed(s) in {seconds:.2}s on {jobs} thread(s), {:.1} seeds/s",
        count as f64 / seconds
    );
    if missed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn seed_line(outcome: &SeedOutcome) -> String {
    let verdict = if outcome.passed { "PASS" } else { "FAIL" };
    format!(
        "seed {}: {verdict}, {} restart(s), trace {:016x}",
        outcome.seed, outcome.restarts, outcome.trace_hash
    )
}

/// Seeds done, failures, seeds per second and the time left.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} seeds, {msg}, {per_sec}, ETA {eta}",
    )
    .expect("the template is valid");
    indicatif::ProgressBar::new(total).with_style(style)
}

fn run(
    catalog: &JobCatalog,
    file: &std::path::Path,
    seed: Option<u64>,
    trace: bool,
    restore: Option<&str>,
    runs: Runs,
) -> ExitCode {
    let Some(mut scenario) = load(catalog, file) else {
        return ExitCode::from(2);
    };
    if let Some(path) = restore {
        if let Err(message) = scenario.restore_from(path) {
            eprintln!("error: --restore: {message}");
            return ExitCode::from(2);
        }
    }
    let seed = seed.unwrap_or(scenario.seed);
    // Wall-clock time is measured here, outside the simulation, and printed on stderr only:
    // stdout stays a pure function of the scenario and the seed.
    let started = std::time::Instant::now();
    let stage_ends = std::sync::Mutex::new(Vec::new());
    let run = crate::sim::run_scenario_staged(
        &scenario,
        seed,
        &file.display().to_string(),
        runs,
        &|stage| {
            let at = started.elapsed().as_secs_f64();
            stage_ends
                .lock()
                .expect("no holder panics")
                .push((stage, at));
        },
    );
    let stage_ends = stage_ends.into_inner().expect("no holder panicked");
    if trace {
        println!("--- trace of the run with faults");
        run.faulty.trace.iter().for_each(|line| println!("{line}"));
        println!("--- trace of the failure-free run");
        run.oracle.trace.iter().for_each(|line| println!("{line}"));
    }
    print!("{}", run.report);
    print_wall_times(&scenario, runs, &stage_ends);
    if !met(&scenario, run.verdict.passed()) {
        eprintln!(
            "unexpected verdict: the scenario expects {:?}",
            scenario.expect
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Wall-clock figures on stderr: how fast the simulation runs on this machine. `stage_ends`
/// holds when each stage ended, in the order they ended; concurrent runs both began when the
/// input was ready. A run's records/s is the engine's: generating the input (what a real
/// deployment finds in its topic already) is a stage of its own.
fn print_wall_times(scenario: &Scenario, runs: Runs, stage_ends: &[(Stage, f64)]) {
    let records = scenario.workload.record_count();
    let input_ready = stage_ends
        .iter()
        .find(|(stage, _)| *stage == Stage::Input)
        .map_or(0.0, |(_, at)| *at);
    let mut previous = 0.0;
    let mut parts = Vec::new();
    for (stage, at) in stage_ends {
        let began = match (runs, stage) {
            (Runs::Concurrent, Stage::FaultyRun | Stage::OracleRun) => input_ready,
            _ => previous,
        };
        let seconds = at - began;
        previous = *at;
        let rate = match stage {
            Stage::FaultyRun | Stage::OracleRun => {
                format!(", {:.0} records/s", records as f64 / seconds)
            }
            Stage::Input | Stage::Check => String::new(),
        };
        parts.push(format!("{stage:?} {seconds:.2}s{rate}"));
    }
    let runs = match runs {
        Runs::Serial => "runs one after the other",
        Runs::Concurrent => "runs side by side",
    };
    eprintln!("wall: {} ({runs}; {previous:.2}s in all)", parts.join("; "));
}

/// How to run this command again: `cargo run --release --` for the `snapflow` binary,
/// `cargo run --release --example NAME --` for an example that calls `main_with`.
fn replay_command() -> String {
    let program = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&program)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "snapflow" | "" => "cargo run --release --".to_string(),
        example => format!("cargo run --release --example {example} --"),
    }
}
