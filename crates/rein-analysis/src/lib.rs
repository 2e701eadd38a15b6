//! Static analysis of Rein policies: what a policy's rules can and cannot
//! do, decided by an SMT solver over the conditions' logic (`rein lint`,
//! `rein diff`). Sound by construction: a claim that no input exists (a rule
//! never matches, one rule covers another) is made only on the solver's
//! `unsat` over an over-approximation of the rules; an example input the
//! solver proposes is confirmed by deciding it with the engine before it is
//! shown; a timeout is reported `unknown`.
