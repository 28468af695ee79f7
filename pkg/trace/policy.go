package trace

// PolicyEvidence is what the NetworkPolicy model says of the probe's flow,
// printed beside the live verdict. The plugin sets it in cluster mode for an
// active probe; nil when the model was not consulted.
type PolicyEvidence struct {
	// Admitted: the model admits the flow (the source's egress and the
	// destination's ingress).
	Admitted bool `json:"admitted"`
	// Statement says why in one line: the policies that select the pods and
	// the rules that admit the flow, or the policy that denies it.
	Statement string `json:"statement,omitempty"`
	// Disagreement is set when the live verdict contradicts the model: the
	// probe was delivered while the model denies it, or lost on a node of the
	// two pods while the model admits it.
	Disagreement string `json:"disagreement,omitempty"`
	// Unavailable says why there is no statement (a permission the user
	// lacks, an object the model could not read); then Admitted means nothing.
	Unavailable string `json:"unavailable,omitempty"`
}
