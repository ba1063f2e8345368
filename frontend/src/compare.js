// Pure helpers for comparing adapters: which adapters a compare sends to. No DOM here.

export const MAX_COMPARED = 4; // the server takes 2 to 4 adapters

/** The ticked adapters ("" is the base), without the one picked above and without repeats,
 * at most MAX_COMPARED - 1 of them (the picked one answers too). */
export function chosenToCompare(ticked, picked) {
  const others = [...new Set(ticked)].filter((slug) => slug !== picked);
  return others.slice(0, MAX_COMPARED - 1);
}
