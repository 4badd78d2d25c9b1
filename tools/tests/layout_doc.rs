//! shm-layout/LAYOUT.md ends with the output of `qilinctl layout`; this fails when the layout
//! changes and the document does not (regenerate the block with `qilinctl layout`).

use std::process::Command;

#[test]
fn layout_md_field_tables_match_the_code() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shm-layout/LAYOUT.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let tables = doc.split("## Field tables (`qilinctl layout`)").nth(1).expect("the field-table section");
    let block = tables.split("```text\n").nth(1).and_then(|b| b.split("```").next()).expect("a text block");
    let out = Command::new(env!("CARGO_BIN_EXE_qilinctl")).arg("layout").output().unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        block, printed,
        "LAYOUT.md's field tables are stale: replace the block with `cargo run -p qilin-tools --bin qilinctl -- layout`"
    );
}
