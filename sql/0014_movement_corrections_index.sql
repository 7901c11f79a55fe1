-- The correction of a reversed movement, found by what it corrects (issue #9).
--
-- The EPCIS query (Store.epcisEvents) names, for each ledger event it returns, the
-- movement that corrects it. With no index on corrects_id that lookup read every movement
-- of the ecosystem, and the query made it for every candidate row before sorting and
-- paging: Schemathesis's full run, on a demo grown to 218,000 movements by the earlier
-- tests, left 23 such queries running for 10 to 31 minutes. The query now looks up only
-- the rows of the page it returns, through this index. Corrections are few, hence partial.
CREATE INDEX movements_corrects_idx ON movements (ecosystem_id, corrects_id) WHERE corrects_id IS NOT NULL;
