"""Know the robot: models, forward kinematics, kinematic rendering of link masks and depth, calibration.

Heavy libraries (trimesh, mujoco, scipy.optimize) are imported inside the
functions that need them; importing this package costs only numpy.
"""

from masktrack.robot.model import RobotModel, RobotModelError
from masktrack.robot.render import RobotRender, occlude, render
from masktrack.robot.state import RobotState

__all__ = ["RobotModel", "RobotModelError", "RobotRender", "RobotState", "occlude", "render"]
