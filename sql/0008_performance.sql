-- Performance (issue #8, docs/performance.md).
-- Each member's first and last declaration (the prescription funnel, read by every
-- mediation report): without this index, two sequential scans of movements per member
-- (6.9 s for 300 members over 100,000 movements); with it, two index probes each.
CREATE INDEX movements_declarer_idx ON movements (ecosystem_id, declarer_id, record_time);
