/** Safety numbers as people compare them: 60 digits in 12 groups of 5. */

export function safetyGroups(digits: string): string[] {
  if (!/^[0-9]{60}$/.test(digits)) throw new RangeError("a safety number is 60 digits");
  return Array.from({ length: 12 }, (_, i) => digits.slice(i * 5, i * 5 + 5));
}
