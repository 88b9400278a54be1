//! linesight: line-side visual inspection. CLI only: parse, hand over to `commands`,
//! print the error chain.

use clap::{Parser, Subcommand};
use linesight::commands;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "linesight",
    version,
    about = "Line-side visual inspection: scores every part with a GAN anomaly model and fires the reject output for faulty ones"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(commands::run::Args),
    Check(commands::check::Args),
    Collect(commands::collect::Args),
    Pulse(commands::pulse::Args),
    Eval(commands::eval::Args),
    Bench(commands::bench::Args),
    Calibrate(commands::calibrate::Args),
    Synth(commands::synth::Args),
}

fn main() -> ExitCode {
    linesight::logging::init();
    let result = match Cli::parse().command {
        Command::Run(a) => commands::run::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Collect(a) => commands::collect::run(a),
        Command::Pulse(a) => commands::pulse::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Calibrate(a) => commands::calibrate::run(a),
        Command::Synth(a) => commands::synth::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let p = linesight::logging::prefix(log::Level::Error);
            eprintln!("{p}linesight: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("{p}  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
