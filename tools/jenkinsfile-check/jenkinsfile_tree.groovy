// Parses a Jenkinsfile with the Groovy 2.4 parser Jenkins pipelines run on (Debian's `groovy`),
// up to the CONVERSION phase: syntax only, nothing is resolved or run. Prints its tree of
// statements as JSON for tests/pipelines, which checks the declarative structure on it:
//   call:   {"call": NAME, "line": N, "strings": [string arguments], "body": [...] | null | "opaque"}
//   assign: {"assign": NAME, "line": N, "function": NAME | null, "strings": [...]}
//           (`X = credentials('id')`: function "credentials", strings ["id"]; `X = 'v'`: null, ["v"])
//   other:  {"other": "statement", "line": N}
// A `script {}` body is "opaque": any Groovy may go there. A syntax error prints FILE:LINE:COLUMN.
// Usage: groovy jenkinsfile_tree.groovy JENKINSFILE
import groovy.json.JsonOutput
import org.codehaus.groovy.ast.expr.ArgumentListExpression
import org.codehaus.groovy.ast.expr.BinaryExpression
import org.codehaus.groovy.ast.expr.ClosureExpression
import org.codehaus.groovy.ast.expr.ConstantExpression
import org.codehaus.groovy.ast.expr.DeclarationExpression
import org.codehaus.groovy.ast.expr.Expression
import org.codehaus.groovy.ast.expr.GStringExpression
import org.codehaus.groovy.ast.expr.ListExpression
import org.codehaus.groovy.ast.expr.MapEntryExpression
import org.codehaus.groovy.ast.expr.MapExpression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.ast.expr.TupleExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.ast.stmt.BlockStatement
import org.codehaus.groovy.ast.stmt.ExpressionStatement
import org.codehaus.groovy.ast.stmt.Statement
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.MultipleCompilationErrorsException
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.control.messages.SyntaxErrorMessage

// The string constants among a call's arguments, in source order; map keys are names, not values.
List<String> strings(Expression expression) {
  if (expression instanceof ConstantExpression) {
    return expression.value instanceof String ? [expression.value] : []
  }
  if (expression instanceof GStringExpression) {
    return ['<gstring>']
  }
  if (expression instanceof MapEntryExpression) {
    return strings(expression.valueExpression)
  }
  if (expression instanceof MapExpression) {
    return expression.mapEntryExpressions.collectMany { entry -> strings(entry) }
  }
  if (expression instanceof TupleExpression || expression instanceof ListExpression) {
    return expression.expressions.collectMany { item -> strings(item) }
  }
  if (expression instanceof MethodCallExpression) {
    return strings(expression.arguments)
  }
  return []
}

List<Map> tree(Statement statement) {
  List<Statement> statements = statement instanceof BlockStatement ? statement.statements : [statement]
  return statements.collect { item -> node(item) }
}

Map node(Statement statement) {
  Expression expression = statement instanceof ExpressionStatement ? statement.expression : null
  if (expression instanceof MethodCallExpression && expression.implicitThis) {
    List<Expression> args = expression.arguments instanceof ArgumentListExpression ||
        expression.arguments instanceof TupleExpression ? expression.arguments.expressions : []
    List<ClosureExpression> closures = args.findAll { arg -> arg instanceof ClosureExpression }
    Object body = null
    if (closures) {
      body = expression.methodAsString == 'script' ? 'opaque' : tree(closures[-1].code)
    }
    List<String> found = args.findAll { arg -> !(arg instanceof ClosureExpression) }
        .collectMany { arg -> strings(arg) }
    return [call: expression.methodAsString, line: statement.lineNumber, strings: found, body: body]
  }
  // `NAME = value` (environment {}); a declaration such as `def x = 1` is plain Groovy.
  if (expression instanceof BinaryExpression && !(expression instanceof DeclarationExpression) &&
      expression.operation.text == '=' && expression.leftExpression instanceof VariableExpression) {
    Expression right = expression.rightExpression
    boolean call = right instanceof MethodCallExpression && right.implicitThis
    boolean text = right instanceof ConstantExpression && right.value instanceof String ||
        right instanceof GStringExpression
    return [assign: expression.leftExpression.name, line: statement.lineNumber,
            function: call ? right.methodAsString : null, strings: call || text ? strings(right) : []]
  }
  return [other: 'statement', line: statement.lineNumber]
}

File file = new File(args[0])
CompilationUnit unit = new CompilationUnit()
unit.addSource(file)
try {
  unit.compile(Phases.CONVERSION)
} catch (MultipleCompilationErrorsException failed) {
  failed.errorCollector.errors.each { error ->
    if (error instanceof SyntaxErrorMessage) {
      System.err.println("${file}:${error.cause.line}:${error.cause.startColumn}: ${error.cause.originalMessage}")
    } else {
      System.err.println("${file}: ${error}")
    }
  }
  System.exit(1)
}
println JsonOutput.toJson(tree(unit.AST.modules[0].statementBlock))
