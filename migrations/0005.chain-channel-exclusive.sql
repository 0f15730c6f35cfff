-- depends: 0004.chain
-- A channel account serves one payout at a time: a second payout bound to it while the
-- first is open would take the same sequence number.

CREATE UNIQUE INDEX chain_payouts_one_open_per_channel ON chain_payouts (channel)
    WHERE state IN ('bound', 'submitting', 'applied', 'rejected');
