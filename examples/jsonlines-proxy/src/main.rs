//! sluice with one more record codec: `jsonlines`, from the example codec crate. A stream
//! listener with `codec = "jsonlines"` then reads JSON lines; everything else is sluice as
//! shipped (same command line, same configuration).

fn main() -> std::process::ExitCode {
    sluice::Sluice::builder()
        .codec(sluice_codec_jsonlines::JsonLinesFactory)
        .run_from_args()
}
