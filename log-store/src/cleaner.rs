//! Log compaction (`cleanup.policy=compact`): placeholder, filled in below.
