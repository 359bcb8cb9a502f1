fn main() {
    eprintln!("runvm: not built yet");
    std::process::exit(1);
}
