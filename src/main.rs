fn main() -> std::process::ExitCode {
    cardgate::cli::main()
}
