fn main() {
    eprintln!("qilin-core: not built yet (issue #4)");
    std::process::exit(2);
}
