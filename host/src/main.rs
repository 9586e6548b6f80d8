fn main() -> std::process::ExitCode {
    pipehost::cli::main()
}
