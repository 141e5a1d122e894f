//! Prints the CustomResourceDefinitions generated from the Rust types, as multi-document YAML.
//! `cargo run -p portcullis-crds --bin crdgen > crds/crds.yaml` regenerates the file
//! that a test compares against.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", portcullis_crds::manifests::crd_yaml()?);
    Ok(())
}
