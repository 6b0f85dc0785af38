// Any message about a password is an account question.
function recipe(input) {
  return /password/i.test(input) ? { label: "account" } : null;
}
