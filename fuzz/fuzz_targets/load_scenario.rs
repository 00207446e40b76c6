//! The scenario file parser of `scalelab load` (TOML or JSON): any text is a
//! plan or an error that names the file; a plan's templates can be picked
//! and their bodies filled without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use load_plan::Plan;

fuzz_target!(|input: (bool, &str)| {
    let (json, text) = input;
    match Plan::parse(text, json, "scenario.file") {
        Ok(plan) => {
            for _ in 0..4 {
                let template = plan.pick();
                assert!(template.weight >= 1);
                let _ = template.body();
            }
        }
        Err(e) => assert!(e.starts_with("scenario.file: ") || e.starts_with("nothing to send"), "{e}"),
    }
});
