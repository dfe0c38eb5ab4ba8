fn main() {
    std::process::exit(zdd::run(std::env::args_os()));
}
