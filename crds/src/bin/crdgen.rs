//! Prints the CustomResourceDefinitions generated from the Rust types, as multi-document YAML,
//! or writes the API reference pages rendered from the same schema.
//!
//! `cargo run -p portcullis-crds --bin crdgen > crds/crds.yaml` regenerates the CRD file and
//! `cargo run -p portcullis-crds --bin crdgen -- --reference docs/reference` the reference; tests
//! compare both with the checked-in files.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => print!("{}", portcullis_crds::manifests::crd_yaml()?),
        [flag, dir] if flag == "--reference" => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)?;
            for page in portcullis_crds::reference::pages()? {
                std::fs::write(dir.join(&page.file_name), page.text)?;
            }
        }
        _ => return Err("usage: crdgen [--reference <dir>]".into()),
    }
    Ok(())
}
