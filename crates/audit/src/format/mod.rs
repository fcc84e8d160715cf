//! Event layouts for receivers and exports: the journal's own line (`jsonl`), Elastic
//! Common Schema ([`ecs`]), OCSF API Activity ([`ocsf`]) and ArcSight CEF ([`cef`]).
//! Sinks and `gatehouse audit export` both lay events out through [`render`].

pub mod cef;
pub mod ecs;
pub mod ocsf;

use gatehouse_config::EventFormat;

use crate::reader::StoredEvent;

/// One event laid out as `format`, on one line (no newline). `raw` is the journal line the
/// event was read from (what `jsonl` writes, byte for byte).
pub fn render(format: EventFormat, event: &StoredEvent, raw: &[u8]) -> String {
    match format {
        EventFormat::Jsonl => String::from_utf8_lossy(raw).into_owned(),
        EventFormat::Ecs => ecs::document(event).to_string(),
        EventFormat::Ocsf => ocsf::document(event).to_string(),
        EventFormat::Cef => cef::line(event),
    }
}
