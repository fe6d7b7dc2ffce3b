fn main() -> std::process::ExitCode {
    cardgate::main()
}
