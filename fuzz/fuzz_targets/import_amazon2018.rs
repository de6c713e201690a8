//! The amazon2018 importer on a directory whose file picked by the input's first byte is the rest of
//! the input (see `instructrec_fuzz::import_case`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    instructrec_fuzz::import_case(&instructrec_fuzz::AMAZON2018, data);
});
