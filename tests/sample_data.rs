//! sample_data/ is exactly what its README's command produces.

mod common;

#[test]
fn sample_data_is_reproducible_from_its_command() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("sample");
    common::simulate(&fresh, 200, 7);
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    for table in ["turns", "annotations"] {
        let read = |dir: &std::path::Path| {
            std::fs::read(dir.join(table).join("part-00000.parquet")).unwrap()
        };
        assert!(
            read(&fresh) == read(&shipped),
            "sample_data/{table} differs from `labelgen simulate --dialogues 200 --seed 7`; \
             regenerate it with that command and --out sample_data --force"
        );
    }
}
