//! AWS change events and the change record the nodes read: any message on
//! the queue and any record text is refused or read, never a panic; what is
//! recorded stays within the record's bounds and reads back as written.
#![no_main]

use aws_secrets_csi_core::aws_events;
use aws_secrets_csi_core::change_log::{ChangeLog, MAX_BYTES, MAX_ENTRIES, Seen};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(log) = ChangeLog::decode(text) {
        let news = log.since(Some(&Seen {
            epoch: log.epoch.clone(),
            next: log.next / 2,
        }));
        assert!(news.changes.len() <= log.changes.len());
        let _ = log.since(Some(&Seen::no_record()));
    }
    if let Ok(change) = aws_events::parse(text) {
        let mut log = ChangeLog::new("e");
        let burst = vec![change; MAX_ENTRIES + 1];
        log.record(&burst, 1);
        let encoded = log.encode();
        assert!(encoded.len() <= MAX_BYTES);
        assert!(log.changes.len() <= MAX_ENTRIES);
        assert_eq!(ChangeLog::decode(&encoded).unwrap(), log);
    }
});
