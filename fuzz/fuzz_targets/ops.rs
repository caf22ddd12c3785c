//! The C-ABI-shaped core of VLS under operations decoded from the fuzzer's
//! bytes, over the in-memory VCL double (see `vls::fuzzing`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vls::fuzzing::run(data));
