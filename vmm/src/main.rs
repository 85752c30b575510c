use std::process::ExitCode;

fn main() -> ExitCode {
    vmm::startup::mark_process_start();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    vmm::cli::main()
}
