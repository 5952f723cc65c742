//! Embeds every file under `stdlib/` into the binary (see `src/lua/stdlib.rs`).
use std::path::Path;

fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read stdlib/")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            walk(&path, root, out);
        } else if path.extension().is_some_and(|x| x == "lua") {
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/"),
            );
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
    println!("cargo:rerun-if-changed=stdlib");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    for f in &files {
        println!("cargo:rerun-if-changed=stdlib/{f}");
    }
    let body: String = files
        .iter()
        .map(|f| format!("    ({f:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/stdlib/{f}\"))),\n"))
        .collect();
    let code = format!(
        "/// Every file under `stdlib/`: (path relative to stdlib/, contents).\npub static FILES: &[(&str, &str)] = &[\n{body}];\n"
    );
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("stdlib_files.rs");
    std::fs::write(out, code).unwrap();
}
