//! `lpm-wasm-split INPUT.wasm OUT_DIR MAIN_JS`: splits the web UI's WebAssembly (linked with
//! `--emit-relocs`) at the split points leptos' `#[lazy]` functions mark, as `scripts/lib.sh`
//! (`build_wasm`) runs it before wasm-bindgen.
//!
//! Writes into OUT_DIR: `main.wasm` (the main module, for wasm-bindgen), one `.wasm` per split
//! module and shared chunk, the loader `__wasm_split.______________________.js` (the name leptos'
//! `HydrationScripts` preloads; it imports `initSync` from MAIN_JS, relative to itself), and
//! `__wasm_split_manifest.json`: for each split point, the modules it needs, which the manager
//! turns into `<link rel="preload">` tags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Code needed by at least this many of the pages goes into the main module rather than a
/// shared chunk. Measured with 13 pages (docs/benchmarks.md, Hosts page, release): off, 184
/// modules, 375 KB brotli, interactive 469 ms; 5: 56 modules, 321 KB, 297 ms; 3: 13 modules,
/// 308 KB, 279 ms.
const MAIN_SHARE_THRESHOLD: usize = 3;

/// The loader's file name: the one leptos' `HydrationScripts` names in its modulepreload link.
const LINK_NAME: &str = "./__wasm_split.______________________.js";
const MANIFEST: &str = "__wasm_split_manifest.json";

fn run(input: &Path, out_dir: &Path, main_js: &str) -> Result<(), String> {
    let wasm = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let main_out = out_dir.join("main.wasm");
    let mut opts = wasm_split_cli_support::Options::new(&wasm);
    opts.output_dir = out_dir;
    opts.main_out_path = &main_out;
    opts.main_module = main_js;
    opts.link_name = LINK_NAME;
    opts.main_share_threshold = MAIN_SHARE_THRESHOLD;
    let split = wasm_split_cli_support::transform(opts)
        .map_err(|e| format!("splitting {}: {e:#}", input.display()))?;
    // Sorted, so the same input gives the same bytes (the bundle is named by its content).
    let manifest: BTreeMap<_, _> = split.prefetch_map.into_iter().collect();
    let json = serde_json::to_string(&manifest).map_err(|e| e.to_string())?;
    let path = out_dir.join(MANIFEST);
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "{} split modules, {} split points",
        split.split_modules.len(),
        manifest.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out_dir, main_js] = args.as_slice() else {
        eprintln!("usage: lpm-wasm-split INPUT.wasm OUT_DIR MAIN_JS");
        return ExitCode::from(2);
    };
    match run(Path::new(input), &PathBuf::from(out_dir), main_js) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lpm-wasm-split: {e}");
            ExitCode::FAILURE
        }
    }
}
