//! Majority arithmetic: pure functions, tested exhaustively on small clusters.

use crate::types::LogIndex;

/// The number of members that form a majority of `n`.
pub(crate) fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The highest index that a majority of `voters` has reached, given the `matches` of
/// the voters heard of (fewer than `voters` while one is not tracked: it counts as 0).
pub(crate) fn committed_index(matches: &mut [LogIndex], voters: usize) -> LogIndex {
    let need = majority(voters);
    if voters == 0 || matches.len() < need {
        return LogIndex(0);
    }
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[need - 1]
}

/// Outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteTally {
    Won,
    Lost,
    Pending,
}

/// Tallies `granted` and `rejected` votes among `n` voters.
pub(crate) fn tally(n: usize, granted: usize, rejected: usize) -> VoteTally {
    let need = majority(n);
    if granted >= need {
        VoteTally::Won
    } else if rejected > n - need {
        VoteTally::Lost
    } else {
        VoteTally::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!(
            (1..=7).map(majority).collect::<Vec<_>>(),
            vec![1, 2, 2, 3, 3, 4, 4]
        );
    }

    #[test]
    fn committed_index_is_the_majority_th_largest() {
        // Exhaustive over 3 members with indexes 0..4: compare against a brute-force definition.
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    let mut m = [LogIndex(a), LogIndex(b), LogIndex(c)];
                    let got = committed_index(&mut m, 3);
                    let brute = (0..4u64)
                        .filter(|i| [a, b, c].iter().filter(|x| **x >= *i).count() >= 2)
                        .max()
                        .unwrap();
                    assert_eq!(got, LogIndex(brute), "{a} {b} {c}");
                }
            }
        }
        assert_eq!(committed_index(&mut [], 0), LogIndex(0));
        // A voter not tracked yet counts as holding nothing.
        assert_eq!(
            committed_index(&mut [LogIndex(5), LogIndex(4)], 4),
            LogIndex(0)
        );
        let mut three = [LogIndex(5), LogIndex(4), LogIndex(2)];
        assert_eq!(committed_index(&mut three, 4), LogIndex(2));
    }

    #[test]
    fn tallies() {
        assert_eq!(tally(5, 3, 0), VoteTally::Won);
        assert_eq!(tally(5, 2, 2), VoteTally::Pending);
        assert_eq!(tally(5, 2, 3), VoteTally::Lost);
        assert_eq!(tally(1, 1, 0), VoteTally::Won);
        assert_eq!(tally(4, 2, 2), VoteTally::Lost);
        assert_eq!(tally(4, 2, 1), VoteTally::Pending);
    }
}
