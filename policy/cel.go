package policy

import (
	"errors"
	"fmt"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
)

// CEL conditions see one variable, `claims` (map of claim name to value), the same
// shape as GCP workload identity and Kubernetes structured authentication use.
const (
	// celCostLimit bounds one condition's runtime cost (and its static estimate, L17).
	celCostLimit = 10000
	// celSizeEstimate is the largest claim value the cost estimator assumes (tokens are ≤ 16 KiB).
	celSizeEstimate = 16 << 10
)

var (
	celEnvOnce sync.Once
	celEnv     *cel.Env
	celEnvErr  error
)

func conditionEnv() (*cel.Env, error) {
	celEnvOnce.Do(func() {
		celEnv, celEnvErr = cel.NewEnv(cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)))
	})
	return celEnv, celEnvErr
}

// errNotBool marks a condition that compiles but does not produce a bool: a load
// accepts it (so lint L17 can report it with its fix), the evaluator never matches it.
var errNotBool = errors.New("condition must evaluate to a bool")

func isTypeOnly(err error) bool { return errors.Is(err, errNotBool) }

// compileCondition parses and type-checks a CEL condition.
func compileCondition(src string) (*cel.Ast, error) {
	env, err := conditionEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return ast, fmt.Errorf("%w, it has type %s", errNotBool, t)
	}
	return ast, nil
}

// conditionProgram builds the evaluated form of a condition (optimised, cost limited).
func conditionProgram(src string) (cel.Program, error) {
	ast, err := compileCondition(src)
	if err != nil {
		return nil, err
	}
	env, _ := conditionEnv()
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(celCostLimit))
}

// evalCondition runs a program; anything but a plain true (errors, non-bools, cost
// overruns) is a non-match, so a broken condition fails closed.
func evalCondition(prg cel.Program, claims map[string]any) bool {
	out, _, err := prg.Eval(map[string]any{"claims": claims})
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// conditionMatchesEveryone evaluates the condition with every claim unknown: a concrete
// true means no claim value can make it false, i.e. it admits every token of the issuer.
func conditionMatchesEveryone(src string) (bool, error) {
	ast, err := compileCondition(src)
	if err != nil {
		return false, err
	}
	env, _ := conditionEnv()
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptPartialEval, cel.OptTrackState))
	if err != nil {
		return false, err
	}
	act, err := cel.PartialVars(map[string]any{}, cel.AttributePattern("claims"))
	if err != nil {
		return false, err
	}
	out, _, err := prg.Eval(act)
	if err != nil {
		return false, nil
	}
	if types.IsUnknown(out) {
		return false, nil
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}

type celSizer struct{}

func (celSizer) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

func (celSizer) EstimateSize(cost.AstNode) *cost.SizeEstimate {
	return &cost.SizeEstimate{Min: 0, Max: celSizeEstimate}
}

// conditionCost is the static worst-case cost estimate of a condition.
func conditionCost(src string) (uint64, error) {
	ast, err := compileCondition(src)
	if err != nil && !isTypeOnly(err) {
		return 0, err
	}
	env, _ := conditionEnv()
	est, err := env.EstimateCost(ast, celSizer{})
	if err != nil {
		return 0, err
	}
	return est.Max, nil
}

// conditionNegativeOnly reports whether every conjunct of the condition is a negation
// (`!x`, `a != b`): such a condition only excludes and cannot narrow an identity.
func conditionNegativeOnly(src string) bool {
	ast, err := compileCondition(src)
	if err != nil && !isTypeOnly(err) {
		return false
	}
	var conj []celast.Expr
	var split func(e celast.Expr)
	split = func(e celast.Expr) {
		if e.Kind() == celast.CallKind && e.AsCall().FunctionName() == "_&&_" {
			for _, a := range e.AsCall().Args() {
				split(a)
			}
			return
		}
		conj = append(conj, e)
	}
	split(ast.NativeRep().Expr())
	for _, e := range conj {
		if e.Kind() != celast.CallKind {
			return false
		}
		switch e.AsCall().FunctionName() {
		case "!_", "_!=_":
		default:
			return false
		}
	}
	return len(conj) > 0
}
