//! Fuzz the stack-file loader: any text must give a stack or diagnostics, never a panic,
//! and every diagnostic must point inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(diags) = shoal_config::parse(&text, "fuzz.yaml") {
        // Lines as YAML counts them (1.2 §5.4: CR LF, CR and LF each break a line; `str::lines`
        // does not count a lone CR), plus one for a diagnostic just past the last line.
        let lines = text.replace("\r\n", "\n").replace('\r', "\n").split('\n').count() + 1;
        for d in diags.iter() {
            assert!(d.line <= lines, "diagnostic past the end of the file: {d}");
            assert!(!d.message.is_empty());
        }
    }
});
